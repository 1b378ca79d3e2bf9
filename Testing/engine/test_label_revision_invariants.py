"""Label revisions under random annotators, lease expiries, releases and submits (hypothesis state machine).

After every step: every accepted revision is retrievable with its content; the current file is the latest
accepted revision; no accepted submit replaced a revision its author had not seen (unless overwrite); a
refused submit changed nothing. Bounded and seeded, so the suite's time stays predictable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from asfda.core.checksums import sha256_file
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_revisions import RevisionConflict
from asfda.data.label_submit import NO_LABEL, LabelSubmission, submit_label
from asfda.data.leases import LeaseBook, LeaseConflict
from asfda.io.volumes import load_volume
from asfda.models.config import ModelConfig
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

ANNOTATORS = ("ada", "bea", "cy")
CASE = "case0"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


class Revisions(RuleBasedStateMachine):
    template: Path  # a datastore with a model and cases, copied for each example
    truth: np.ndarray
    work: Path
    examples = 0

    @initialize()
    def fresh_datastore(self):
        Revisions.examples += 1
        root = self.work / f"example-{Revisions.examples}"
        shutil.copytree(self.template, root)
        self.store = Datastore(root)
        self.version = self.store.models.active_version()
        self.config = ModelConfig.load(self.store.models.root / self.version / "config.json")
        self.clock = Clock()
        self.leases = LeaseBook(self.store.state.path, clock=self.clock, root=root)
        self.opened = {}  # annotator -> the revision their client opened ("" none)
        self.accepted = []  # (revision id, author, sha256 of the stored file)
        self.count = 0

    def current(self):
        return self.accepted[-1] if self.accepted else None

    @rule(annotator=st.sampled_from(ANNOTATORS))
    def open_case(self, annotator):
        try:
            lease = self.leases.take(CASE, annotator, lease_s=60)
        except LeaseConflict:
            holder = self.leases.holder(CASE)
            assert holder is not None and holder.annotator != annotator
            return
        current = self.current()
        assert lease.revision == (current[0] if current else None)  # the lease names what is opened
        self.opened[annotator] = lease.revision or NO_LABEL

    @rule(seconds=st.sampled_from([10.0, 61.0]))
    def time_passes(self, seconds):
        self.clock.now += seconds  # 61 s: every lease lapses (a laptop asleep)

    @rule(annotator=st.sampled_from(ANNOTATORS))
    def release(self, annotator):
        try:
            self.leases.release(CASE, annotator)
        except LeaseConflict:
            pass

    @rule(annotator=st.sampled_from(ANNOTATORS), overwrite=st.sampled_from([False, False, False, True]))
    def submit(self, annotator, overwrite):
        self.count += 1
        drawn = np.roll(self.truth, self.count % 7, axis=0)
        path = write_nifti(self.store.root.parent / f"{self.store.root.name}-{self.count}.nii.gz", drawn, AFFINE)
        base = self.opened.get(annotator)
        before, holder = self.current(), self.leases.holder(CASE)
        final = self.store.label_path(CASE, LabelTag.FINAL)
        final_before = sha256_file(final) if final.exists() else None
        submission = LabelSubmission(CASE, path, annotator, "upload", base_revision=base, overwrite=overwrite)
        try:
            result = submit_label(self.store, submission, self.config, self.version, self.leases)
        except (LeaseConflict, RevisionConflict) as refused:
            assert "\n" not in str(refused)
            assert (sha256_file(final) if final.exists() else None) == final_before  # nothing changed
            return
        # Accepted: nobody else held the case, and the author had seen what it replaced (or overwrote).
        assert holder is None or holder.annotator == annotator
        if not overwrite and base is None:
            assert before is None or before[1] == annotator
        elif not overwrite:
            assert base == (before[0] if before else NO_LABEL)
        assert (result.replaced.revision if result.replaced else None) == (before[0] if before else None)
        np.testing.assert_array_equal(load_volume(self.leases.revisions.file_of(result.revision)).numpy(), drawn)
        self.accepted.append((result.revision.revision, annotator, result.revision.sha256))
        self.opened.pop(annotator, None)  # their client moves on

    @invariant()
    def every_accepted_revision_is_kept_and_the_latest_is_current(self):
        if not hasattr(self, "store"):
            return
        listed = self.leases.revisions.revisions(CASE)
        assert [(r.revision, r.author, r.sha256) for r in listed] == self.accepted
        for revision in listed:
            assert sha256_file(self.leases.revisions.file_of(revision)) == revision.sha256
        final = self.store.label_path(CASE, LabelTag.FINAL)
        if self.accepted:
            assert sha256_file(final) == self.accepted[-1][2]
        else:
            assert not final.exists()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    setup = make_setup(tmp_path_factory.mktemp("invariants"), n_cases=1)
    return Path(imported_datastore(setup, "template")), setup.truth[CASE]


def test_label_revisions_keep_every_accepted_label_and_refuse_unseen_replacements(template, tmp_path):
    Revisions.template, Revisions.truth = template
    Revisions.work = tmp_path
    run_state_machine_as_test(
        Revisions,
        settings=settings(
            max_examples=12,
            stateful_step_count=14,
            derandomize=True,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
