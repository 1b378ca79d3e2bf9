"""Label revisions (issue 18, "Lost update of a label"): every accepted label kept, conflicts refused naming both
authors, one submit path for every face (leases, audit, SEG outbox), a crash between commit and replace finished."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from asfda.cli import main
from asfda.core.checksums import sha256_file
from asfda.core.errors import UnknownLabelValues
from asfda.data import label_submit
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.dicomweb.config import DicomwebConfig
from asfda.data.dicomweb.source import DicomwebSource
from asfda.data.dicomweb.writeback import queue_seg
from asfda.data.label_revisions import LabelRevisions, RevisionConflict
from asfda.data.label_submit import NO_LABEL, LabelSubmission, submit_label, submit_label_array
from asfda.data.leases import LeaseBook, LeaseConflict
from asfda.io.volumes import load_volume
from asfda.models.config import ModelConfig
from asfda.worker.jobstore import JobStore
from asfda.worker.recovery import recover
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("revisions"), n_cases=3)


class Store:
    """A datastore with its model config, a lease book on a fake clock and label files to submit."""

    def __init__(self, setup, name: str, tmp_path):
        self.store = Datastore(imported_datastore(setup, name))
        self.version = self.store.models.active_version()
        self.config = ModelConfig.load(self.store.models.root / self.version / "config.json")
        self.clock = FakeClock()
        self.leases = LeaseBook(self.store.state.path, clock=self.clock, root=self.store.root)
        self.truth = setup.truth
        self.files = tmp_path

    def label_file(self, case_id: str, name: str, shift: int = 0):
        # A different drawing per author: the truth moved by `shift` voxels along the first axis.
        return write_nifti(self.files / f"{name}.nii.gz", np.roll(self.truth[case_id], shift, axis=0), AFFINE)

    def submit(self, case_id, name, annotator, base=None, overwrite=False, shift=0, source="upload"):
        submission = LabelSubmission(
            case_id, self.label_file(case_id, name, shift), annotator, source, base_revision=base, overwrite=overwrite
        )
        return submit_label(self.store, submission, self.config, self.version, self.leases)

    def final(self, case_id):
        return load_volume(self.store.label_path(case_id, LabelTag.FINAL)).numpy()


class FolderPacs(DicomwebSource):
    """A PACS whose series are a folder datastore's image files: enough for the SEG outbox, nothing is sent."""

    def __init__(self, folder: Datastore):
        super().__init__(folder.root, DicomwebConfig(url="http://127.0.0.1:9/dicom-web").validate())
        self.folder = folder

    def case_ids(self):
        return self.folder.case_ids()

    def image_path(self, case_id):
        return self.folder.image_path(case_id)

    def fingerprint(self, case_id):
        return self.folder.image_fingerprint(case_id)


def folder_pacs(store: Datastore, monkeypatch) -> FolderPacs:
    """Every Datastore opened on `store`'s folder from now on (the CLI's too) reads it as a PACS."""
    pacs = FolderPacs(store)
    monkeypatch.setattr("asfda.data.datastore.configured_image_source", lambda _root: pacs)
    return pacs


def test_lost_update_of_a_label_is_refused_naming_both_authors(setup, tmp_path):
    s = Store(setup, "lost-update", tmp_path)
    # A opens the unlabelled case; her laptop sleeps past the lease; B is handed the case and submits.
    opened = s.leases.take("case0", "alice", lease_s=60)
    assert opened.revision is None
    s.clock.now += 61
    assert s.leases.take_next("bob", ["case0"], lease_s=60).case_id == "case0"
    by_bob = s.submit("case0", "bob", "bob", base=NO_LABEL, shift=2)
    assert by_bob.revision.revision == "r0001" and by_bob.replaced is None

    # A's submit without a lease: refused, B named (her lease lapsed and B submitted since).
    with pytest.raises(LeaseConflict, match="alice.*bob|bob.*alice"):
        s.submit("case0", "alice", "alice", base=NO_LABEL)
    # A's module renews: the lease says the case now has B's label.
    renewed = s.leases.take("case0", "alice", lease_s=60)
    assert (renewed.revision, renewed.revision_author) == ("r0001", "bob")
    # A submits what she opened (no label): 409-style conflict naming both, and B's label stays.
    with pytest.raises(RevisionConflict) as conflict:
        s.submit("case0", "alice", "alice", base=NO_LABEL)
    message = str(conflict.value)
    assert "bob" in message and "alice" in message and "r0001" in message and "\n" not in message
    np.testing.assert_array_equal(s.final("case0"), np.roll(s.truth["case0"], 2, axis=0))
    # Nor may she submit without naming what she opened, nor name a revision that is not current.
    with pytest.raises(RevisionConflict, match="bob"):
        s.submit("case0", "alice", "alice")
    with pytest.raises(RevisionConflict, match="r0007"):
        s.submit("case0", "alice", "alice", base="r0007")

    # Having seen B's label, she corrects it; then an explicit overwrite, recorded as such.
    by_alice = s.submit("case0", "alice", "alice", base="r0001")
    assert (by_alice.revision.revision, by_alice.replaced.revision) == ("r0002", "r0001")
    forced = s.submit("case0", "bob-again", "bob", base="r0001", overwrite=True, shift=1)
    assert forced.revision.revision == "r0003"

    # Every revision is retrievable, with author, model version and source; the current one is the latest.
    revisions = s.leases.revisions.revisions("case0")
    assert [(r.revision, r.author, r.source, r.model_version) for r in revisions] == [
        ("r0001", "bob", "upload", s.version),
        ("r0002", "alice", "upload", s.version),
        ("r0003", "bob", "upload", s.version),
    ]
    for revision, shift in zip(revisions, (2, 0, 1)):
        kept = load_volume(s.leases.revisions.file_of(revision)).numpy()
        np.testing.assert_array_equal(kept, np.roll(s.truth["case0"], shift, axis=0))
        assert sha256_file(s.leases.revisions.file_of(revision)) == revision.sha256
    np.testing.assert_array_equal(s.final("case0"), np.roll(s.truth["case0"], 1, axis=0))
    (record,) = s.store.state.labels(LabelTag.FINAL.value)
    assert (record.author, record.extra["revision"]) == ("bob", "r0003")
    # The audit lists each submit with its revision; the overwrite names what it replaced.
    submits = [e for e in s.leases.audit("case0") if e["action"] == "label submitted"]
    assert [(e["annotator"], e["detail"]["revision"]) for e in submits] == [
        ("bob", "r0001"),
        ("alice", "r0002"),
        ("bob", "r0003"),
    ]
    assert submits[-1]["detail"]["overwrote"] == {"revision": "r0002", "author": "alice"}
    # The hand-placed-label check before a rank or adapt does not mistake the history folder for a label.
    from asfda.data.hand_placed import check_final_labels

    assert check_final_labels(s.store, s.config) == []


def test_renew_reports_a_label_changed_under_the_holder(setup, tmp_path):
    s = Store(setup, "renew", tmp_path)
    assert s.leases.take("case1", "carol", lease_s=600).label_changed is False
    # Nobody else may submit while carol holds the case, not even with an explicit overwrite.
    with pytest.raises(LeaseConflict, match="carol"):
        s.submit("case1", "dave", "dave", overwrite=True)
    # A file copied in by hand meanwhile: carol's next renewal says the label changed under her.
    s.store.save_label("case1", LabelTag.FINAL, s.truth["case1"], AFFINE, [0, 1], author="by-hand")
    renewed = s.leases.take("case1", "carol", lease_s=600)
    assert (renewed.label_changed, renewed.revision, renewed.revision_author) == (True, "r0001", "by-hand")
    audit = s.leases.audit("case1")[-1]
    assert audit["action"] == "lease renewed" and audit["detail"]["label_changed_from"] is None
    assert s.leases.take("case1", "carol", lease_s=600).label_changed is False  # said once


def test_a_label_from_before_revisions_is_adopted_on_first_touch(setup, tmp_path):
    s = Store(setup, "adopted", tmp_path)
    legacy = s.truth["case2"]
    s.store.save_label("case2", LabelTag.FINAL, legacy, AFFINE, [0, 1], author="dr-old", model_version="v0000")
    lease = s.leases.take("case2", "erin", lease_s=60)
    assert (lease.revision, lease.revision_author) == ("r0001", "dr-old")
    (adopted,) = s.leases.revisions.revisions("case2")
    assert (adopted.source, adopted.author, adopted.model_version) == ("adopted", "dr-old", "v0000")
    np.testing.assert_array_equal(load_volume(s.leases.revisions.file_of(adopted)).numpy(), legacy)
    with pytest.raises(RevisionConflict, match="dr-old"):
        s.submit("case2", "erin", "erin", base=NO_LABEL, shift=1)
    assert s.submit("case2", "erin", "erin", base="r0001", shift=1).revision.revision == "r0002"
    # A file replaced by hand afterwards is adopted as a revision too (the earlier ones stay).
    s.store.save_label("case2", LabelTag.FINAL, legacy, AFFINE, [0, 1])
    assert [r.source for r in s.leases.revisions.revisions("case2")] == ["adopted", "upload", "adopted"]


def test_crash_between_commit_and_replace_is_finished_at_start(setup, tmp_path, monkeypatch):
    s = Store(setup, "crash", tmp_path)
    s.submit("case0", "first", "fay", base=NO_LABEL)

    def killed(self, case_id):
        raise KeyboardInterrupt("killed after the commit")  # the process dies before replacing the file

    monkeypatch.setattr(LabelRevisions, "apply", killed)
    with pytest.raises(KeyboardInterrupt):
        s.submit("case0", "second", "fay", base="r0001", shift=3)
    monkeypatch.undo()
    # Committed: the row points at its history file; the current file is still the first revision.
    np.testing.assert_array_equal(s.final("case0"), s.truth["case0"])
    assert LabelRevisions(s.store.root).current_ids() == {"case0": "r0002"}
    # The worker's start finishes the replace.
    recover(s.store, JobStore(s.store.root / "asfda.db"))
    np.testing.assert_array_equal(s.final("case0"), np.roll(s.truth["case0"], 3, axis=0))
    assert not list((s.store.label_dir(LabelTag.FINAL) / "history" / "case0").glob(".*"))  # no temp files left


def test_a_seg_lost_between_commit_and_queueing_is_queued_at_start(setup, tmp_path, monkeypatch):
    s = Store(setup, "seg-crash", tmp_path)
    pacs = folder_pacs(s.store, monkeypatch)
    s.store = Datastore(s.store.root)  # now backed by the PACS

    def killed(*_args):
        raise KeyboardInterrupt("killed before queueing the SEG")

    monkeypatch.setattr(label_submit, "queue_seg", killed)
    with pytest.raises(KeyboardInterrupt):
        s.submit("case0", "lost-seg", "jo", base=NO_LABEL)
    monkeypatch.setattr(label_submit, "queue_seg", queue_seg)
    assert pacs.index.pending_segs() == []  # the label is stored, its SEG is not queued
    recover(s.store, JobStore(s.store.root / "asfda.db"))
    assert [(p["case_id"], p["annotator"]) for p in pacs.index.pending_segs()] == [("case0", "jo")]
    recover(s.store, JobStore(s.store.root / "asfda.db"))  # decided once: a second start queues nothing new
    assert len(pacs.index.pending_segs()) == 1 and s.leases.revisions.seg_undecided() == []


def test_cli_submit_uses_leases_audit_and_queues_a_seg(setup, tmp_path, monkeypatch, capsys):
    s = Store(setup, "cli", tmp_path)
    root = s.store.root

    pacs = folder_pacs(s.store, monkeypatch)
    label = str(s.label_file("case1", "cli"))
    s.leases = LeaseBook(s.store.state.path, root=root)  # the CLI runs on the real clock
    s.leases.take("case1", "gus", lease_s=600)
    capsys.readouterr()
    assert main(["label", "submit", "--datastore", str(root), "--annotator", "hal", "case1", label]) == 2
    err = capsys.readouterr().err
    assert "leased to gus" in err and "\n" not in err.strip()
    s.leases.release("case1", "gus")
    assert main(["label", "submit", "--datastore", str(root), "--annotator", "hal", "case1", label]) == 0
    assert "as revision r0001" in capsys.readouterr().out
    assert [p["case_id"] for p in pacs.index.pending_segs()] == ["case1"]
    assert main(["label", "submit", "--datastore", str(root), "--annotator", "ivy", "case1", label]) == 2
    err = capsys.readouterr().err
    assert "hal" in err and "ivy" in err and len(err.strip().splitlines()) == 1  # one line naming both authors
    base = ["--base-revision", "r0001"]
    assert main(["label", "submit", "--datastore", str(root), "--annotator", "ivy", *base, "case1", label]) == 0
    submitted = [e for e in s.leases.audit("case1") if e["action"] == "label submitted"]
    assert [(e["annotator"], e["detail"]["source"], e["detail"]["revision"]) for e in submitted] == [
        ("hal", "cli", "r0001"),
        ("ivy", "cli", "r0002"),
    ]
    assert pacs.index.seg_state("case1")["annotator"] == "ivy"
    capsys.readouterr()
    assert main(["label", "revisions", "--datastore", str(root), "case1"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[0].split()[0] == "r0001" and listed[1].split()[:2] == ["*", "r0002"]
    assert "hal" in listed[0] and "ivy" in listed[1] and "cli" in listed[1]


def test_the_simulated_annotator_submits_through_the_same_path(setup, tmp_path):
    s = Store(setup, "simulated", tmp_path)
    submission = LabelSubmission("case2", None, "simulated-annotator", "simulated")
    with pytest.raises(UnknownLabelValues):  # checked like a clinician's, nothing stored
        submit_label_array(s.store, submission, s.truth["case2"] * 5, AFFINE, s.config, s.version, s.leases)
    assert s.leases.revisions.revisions("case2") == []
    stored = submit_label_array(s.store, submission, s.truth["case2"], AFFINE, s.config, s.version, s.leases)
    assert (stored.revision.revision, stored.revision.source) == ("r0001", "simulated")
    assert [e["action"] for e in s.leases.audit("case2")] == ["label submitted"]


def _submit_then_die(root: str, label: str) -> None:
    """In a child process: the submit commits, then the process is SIGKILLed before the file replace."""
    store = Datastore(root)
    version = store.models.active_version()
    config = ModelConfig.load(store.models.root / version / "config.json")
    LabelRevisions.apply = lambda self, case_id: os.kill(os.getpid(), signal.SIGKILL)
    submission = LabelSubmission("case1", Path(label), "kim", "cli", base_revision="r0001")
    submit_label(store, submission, config, version)


def test_sigkill_between_commit_and_replace_loses_nothing(setup, tmp_path):
    s = Store(setup, "sigkill", tmp_path)
    s.submit("case1", "before", "kim", base=NO_LABEL)
    child = multiprocessing.get_context("fork").Process(
        target=_submit_then_die, args=(str(s.store.root), str(s.label_file("case1", "killed", shift=4)))
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    np.testing.assert_array_equal(s.final("case1"), s.truth["case1"])  # killed before the replace
    recover(s.store, JobStore(s.store.root / "asfda.db"))  # the next start
    np.testing.assert_array_equal(s.final("case1"), np.roll(s.truth["case1"], 4, axis=0))
    assert [r.revision for r in LabelRevisions(s.store.root).revisions("case1")] == ["r0001", "r0002"]
