"""Label revisions (submitted, or copied in by hand), adapt jobs finishing, and people activating versions,
interleaved (hypothesis state machine).

The real pieces: the label submit path (`submit_label`), the ModelStore (publish, activate, compare-and-swap,
attach_gate) and the worker's JobRunner deciding a finished adapt job (`_finish`, as its thread does). No
training: an adapt job records its parent and the label set at its start, and at its end publishes a tiny
stand-in network with that label set, as `adapt_datastore` does.

After every step: the active version exists and is complete (its files are what was published); it is the
version a person chose last, or the version a job activated by compare-and-swap when nobody chose one while
it ran (a rollback is never undone); every published version records the label set it trained on, each
label an accepted revision that is still retrievable; every accepted revision is kept with its content and
the current label file is the latest; a stored prediction is served (no stale reason) only while the image
and the model content it was made from are still there, an image replaced with its old mtime (`cp -p`)
included. Bounded and seeded, under half a minute.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import nibabel as nib
import numpy as np
import pytest
from asfda.core.checksums import sha256_file
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.hand_placed import check_final_labels
from asfda.data.label_files import LabelFileError
from asfda.data.label_revisions import LabelRevisions, RevisionConflict
from asfda.data.label_submit import NO_LABEL, LabelSubmission, submit_label
from asfda.data.predictions import prediction_identity, stored_prediction
from asfda.loop.label_sets import TRAINED_LABELS, label_identities
from asfda.models.config import ModelConfig
from asfda.models.networks import build_network
from asfda.worker.jobstore import JobStore
from asfda.worker.runner import JobRunner
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti
from hypothesis import HealthCheck, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

CASES = ("case0", "case1")
ANNOTATORS = ("ada", "bea")
PASS = {"activate": True, "reason": "held-out Dice is not below the parent's", "verdict": "not worse"}
FAIL = {"activate": False, "reason": "held-out Dice below the parent's (binding)", "verdict": "worse", "binding": True}


@dataclass
class Running:
    job_id: str
    parent: str
    labels: Dict[str, str]  # case -> label identity, read at the job's start
    choices: int  # how many activations people had made when it started (counted by the machine)
    store_choices: int  # the same as the ModelStore counts it (recorded with the version, as adapt does)


class LoopInvariants(RuleBasedStateMachine):
    template: Path
    truth: Dict[str, np.ndarray]
    work: Path
    examples = 0

    @initialize()
    def fresh_datastore(self):
        LoopInvariants.examples += 1
        root = self.work / f"example-{LoopInvariants.examples}"
        shutil.copytree(self.template, root)
        self.store = Datastore(root)
        self.models = self.store.models
        self.imported = self.models.active_version()
        self.config = ModelConfig.load(self.models.root / self.imported / "config.json")
        self.network = build_network(self.config)
        self.jobs = JobStore(root / "asfda.db")
        self.runner = JobRunner(root, self.jobs, self.models, "cpu")  # never started: _finish is called here
        self.expected_active = self.imported
        self.choices = 0
        self.running: Optional[Running] = None
        self.trained: Dict[str, Dict[str, str]] = {}  # published version -> the label set it recorded
        self.accepted: Dict[str, List[tuple]] = {c: [] for c in CASES}  # case -> [(revision, sha256)]
        self.count = 0
        self.image_content = {c: 0 for c in CASES}  # bumped each time a case's image is replaced
        self.predicted_from: Dict[str, tuple] = {}  # case -> (image content, model version) of its prediction

    # -- labels -------------------------------------------------------------------------------------------

    def _current(self, case_id: str) -> Optional[tuple]:
        return self.accepted[case_id][-1] if self.accepted[case_id] else None

    def _label_file(self, case_id: str) -> Path:
        self.count += 1
        drawn = np.roll(self.truth[case_id], self.count % 5, axis=0)
        return write_nifti(self.store.root.parent / f"{self.store.root.name}-{self.count}.nii.gz", drawn, AFFINE)

    @rule(case_id=st.sampled_from(CASES), annotator=st.sampled_from(ANNOTATORS))
    def a_label_is_revised(self, case_id, annotator):
        current = self._current(case_id)
        base = current[0] if current else NO_LABEL  # the client opened the current revision
        submission = LabelSubmission(case_id, self._label_file(case_id), annotator, "slicer", base_revision=base)
        result = submit_label(self.store, submission, self.config, self.models.active_version())
        assert (result.replaced.revision if result.replaced else None) == (current[0] if current else None)
        self.accepted[case_id].append((result.revision.revision, result.revision.sha256))

    @precondition(lambda self: any(self.accepted.values()))
    @rule(case_id=st.sampled_from(CASES), annotator=st.sampled_from(ANNOTATORS))
    def a_label_opened_before_the_last_revision_is_refused(self, case_id, annotator):
        if len(self.accepted[case_id]) < 1:
            return
        stale = self.accepted[case_id][-2][0] if len(self.accepted[case_id]) > 1 else NO_LABEL
        submission = LabelSubmission(case_id, self._label_file(case_id), annotator, "slicer", base_revision=stale)
        with pytest.raises(RevisionConflict):
            submit_label(self.store, submission, self.config, self.models.active_version())

    @rule(case_id=st.sampled_from(CASES), good=st.sampled_from([True, True, False]))
    def a_label_is_copied_in_by_hand(self, case_id, good):
        final = self.store.label_path(case_id, LabelTag.FINAL)
        before = final.read_bytes() if final.exists() else None
        drawn = np.roll(self.truth[case_id], self.count % 5 + 1, axis=1)
        self.count += 1
        write_nifti(final, drawn if good else (drawn * 3).astype(np.uint8), AFFINE)
        if not good:
            with pytest.raises(LabelFileError) as refused:  # the check before a rank or adapt
                check_final_labels(self.store, self.config, self.models.active_version())
            assert "\n" not in str(refused.value) and final.is_file()  # one line; the file left as it was
            if before is None:  # the person removes the bad file again
                final.unlink()
            else:
                final.write_bytes(before)
            return
        current = self._current(case_id)
        if current is not None and sha256_file(final) == current[1]:  # the very bytes it holds: nothing new
            assert check_final_labels(self.store, self.config, self.models.active_version()) == []
            return
        assert check_final_labels(self.store, self.config, self.models.active_version()) == [case_id]
        latest = LabelRevisions(self.store.root, self.store.state.path).revisions(case_id)[-1]
        assert latest.source == "hand-placed"
        self.accepted[case_id].append((latest.revision, latest.sha256))

    # -- adapt jobs ---------------------------------------------------------------------------------------

    @precondition(lambda self: self.running is None)  # the worker queues one adapt at a time
    @rule()
    def an_adapt_job_starts(self):
        job_id = self.jobs.submit("adapt", {}, exclusive=True)["job_id"]
        assert self.jobs.claim(job_id)
        parent, store_choices = self.models.active_choice()  # as adapt_datastore reads its parent
        labels = label_identities(self.store, self.store.labeled_ids())  # what the round learns from
        self.running = Running(job_id, parent, labels, self.choices, store_choices)

    @precondition(lambda self: self.running is not None)
    @rule(passes=st.sampled_from([True, True, False]))
    def the_adapt_job_finishes(self, passes):
        job, gate = self.running, PASS if passes else FAIL
        self.running = None
        version = self.models.publish(
            self.network,
            self.config,
            parent=job.parent,
            metrics={TRAINED_LABELS: job.labels, "labels": len(job.labels)},
            note="asfda adapt",
            activate=False,
            gate=gate,
            started_at_choice=job.store_choices,
        )
        self.trained[version] = job.labels
        self.jobs.report_result(job.job_id, {"version": version, "parent": job.parent, "gate": gate})
        active_before = self.models.active_version()
        self.runner._finish(job.job_id, 0)
        result = self.jobs.get(job.job_id)["result"]
        # Activated only when its gate passed, its parent is still active and nobody chose a version since (not
        # even the parent again: before ModelStore counted choices, a rollback and back was undone).
        should = passes and active_before == job.parent and self.choices == job.choices
        assert result["activated"] is should, (result, job, self.choices)
        if should:
            self.expected_active = version
        assert result["active_version"] == self.expected_active

    @precondition(lambda self: self.running is not None)
    @rule()
    def the_adapt_job_dies(self):
        job, self.running = self.running, None
        self.runner._finish(job.job_id, 1)  # crashed or killed before reporting: nothing is activated
        assert self.jobs.get(job.job_id)["state"] == "failed"

    # -- people -------------------------------------------------------------------------------------------

    @rule(pick=st.integers(min_value=0, max_value=8))
    def a_clinician_activates_a_version(self, pick):
        versions = [v.version for v in self.models.versions()]
        chosen = versions[pick % len(versions)]  # a rollback, a step forward, or the active one again
        self.models.activate(chosen)
        self.choices += 1
        self.expected_active = chosen

    @rule(pick=st.integers(min_value=0, max_value=8))
    def a_verdict_lands(self, pick):
        versions = [v.version for v in self.models.versions()]
        self.models.attach_gate(versions[pick % len(versions)], {**PASS, "advisory": True})

    # -- invariants ---------------------------------------------------------------------------------------

    # -- images and predictions ---------------------------------------------------------------------------

    @rule(case_id=st.sampled_from(CASES))
    def a_prediction_is_stored(self, case_id):
        version = self.models.active_version()
        identity = prediction_identity(self.store.image_fingerprint(case_id), self.models.content_id(version))
        geometry = self.store.geometry(case_id)
        self.store.save_label(case_id, LabelTag.PREDICTION, self.truth[case_id], geometry.affine,
                              self.config.label_values, model_version=version, require_foreground=False,
                              extra=identity)  # what predict_case records, without the network pass
        self.predicted_from[case_id] = (self.image_content[case_id], version)

    @rule(case_id=st.sampled_from(CASES))
    def an_image_is_replaced_keeping_its_mtime(self, case_id):
        path = self.store.image_path(case_id)
        before = path.stat()
        image = nib.load(str(path))
        data = np.asarray(image.dataobj) + 1 + self.image_content[case_id]
        nib.save(nib.Nifti1Image(data.astype(image.get_data_dtype()), image.affine), str(path))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` leaves it
        self.image_content[case_id] += 1

    @invariant()
    def a_prediction_is_served_only_for_the_content_it_was_made_from(self):
        for case_id, (content, version) in self.predicted_from.items():
            stored = stored_prediction(self.store, case_id)
            assert stored is not None and stored.model_version == version
            fresh = stored.stale_reason(self.store) is None
            assert fresh == (content == self.image_content[case_id]), (case_id, stored.stale_reason(self.store))

    @invariant()
    def the_active_version_is_the_last_choice_and_complete(self):
        if not hasattr(self, "store"):
            return
        active = self.models.active_version()
        assert active == self.expected_active
        folder = self.models.root / active
        assert all((folder / name).is_file() for name in ("meta.json", "config.json", "weights.pt"))
        meta = self.models.meta(active)
        assert meta.content_id and self.models.content_id(active) == meta.content_id  # what was published

    @invariant()
    def every_published_version_records_the_labels_it_trained_on_and_they_are_kept(self):
        if not hasattr(self, "store"):
            return
        kept = {c: {sha[:16] for _rev, sha in revisions} for c, revisions in self.accepted.items()}
        for version, labels in self.trained.items():
            assert self.models.meta(version).metrics[TRAINED_LABELS] == labels
            for case_id, identity in labels.items():
                assert identity in kept[case_id]  # the revision it trained on is retrievable

    @invariant()
    def every_accepted_revision_is_retrievable_and_the_latest_is_current(self):
        if not hasattr(self, "store"):
            return
        revisions = LabelRevisions(self.store.root, self.store.state.path)
        for case_id, accepted in self.accepted.items():
            listed = revisions.revisions(case_id)
            assert [(r.revision, r.sha256) for r in listed] == accepted
            for revision in listed:
                assert sha256_file(revisions.file_of(revision)) == revision.sha256
            final = self.store.label_path(case_id, LabelTag.FINAL)
            assert (sha256_file(final) if final.exists() else None) == (accepted[-1][1] if accepted else None)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    setup = make_setup(tmp_path_factory.mktemp("loop-invariants"), n_cases=len(CASES))
    return Path(imported_datastore(setup, "template")), setup.truth


def test_activation_adapt_completions_and_label_revisions_keep_their_invariants(template, tmp_path):
    LoopInvariants.template, LoopInvariants.truth = template
    LoopInvariants.work = tmp_path
    run_state_machine_as_test(
        LoopInvariants,
        settings=settings(
            max_examples=20,
            stateful_step_count=12,
            derandomize=True,
            verbosity=Verbosity.verbose,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
