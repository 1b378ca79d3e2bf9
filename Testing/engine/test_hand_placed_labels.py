"""Labels copied into labels/final/ by hand go through the one submit path at check time (issue 18, "Worker
checks what the CLI checks"): the same checks, a revision, the audit, leases; a bad one is left untouched."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.hand_placed import check_final_labels
from asfda.data.label_files import LabelFileError
from asfda.data.label_revisions import LabelRevisions, RevisionConflict
from asfda.data.label_submit import LabelSubmission, submit_label
from asfda.data.leases import LeaseBook
from asfda.io.volumes import load_volume
from asfda.models.config import ModelConfig
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("hand-placed"), n_cases=3)


@pytest.fixture
def ds(setup, request):
    store = Datastore(imported_datastore(setup, request.node.name[:40]))
    version = store.models.active_version()
    return store, ModelConfig.load(store.models.root / version / "config.json"), version


def _submit(store, config, version, case_id, file, annotator, base=None):
    submission = LabelSubmission(case_id, file, annotator, "upload", base_revision=base)
    return submit_label(store, submission, config, version)


def test_a_label_copied_over_a_revision_becomes_the_next_revision_with_its_audit(setup, ds, tmp_path):
    store, config, version = ds
    first = write_nifti(tmp_path / "alice.nii.gz", setup.truth["case0"], AFFINE)
    _submit(store, config, version, "case0", first, "alice")
    moved = np.roll(setup.truth["case0"], 2, axis=0)
    write_nifti(store.label_path("case0", LabelTag.FINAL), moved, AFFINE)  # copied over alice's label by hand

    assert check_final_labels(store, config, version) == ["case0"]
    revisions = LabelRevisions(store.root, store.state.path)
    history = revisions.revisions("case0")
    assert [(r.revision, r.source, r.author) for r in history] == [
        ("r0001", "upload", "alice"),
        ("r0002", "hand-placed", None),
    ]
    np.testing.assert_array_equal(load_volume(revisions.file_of(history[0])).numpy(), setup.truth["case0"])
    np.testing.assert_array_equal(load_volume(store.label_path("case0", LabelTag.FINAL)).numpy(), moved)
    (record,) = store.state.labels(LabelTag.FINAL.value)
    assert (record.extra["revision"], record.extra["source"], record.model_version) == ("r0002", "hand-placed", version)
    submits = [
        e for e in LeaseBook(store.state.path, root=store.root).audit("case0") if e["action"] == "label submitted"
    ]
    assert submits[-1]["detail"]["overwrote"] == {"revision": "r0001", "author": "alice"}
    assert submits[-1]["detail"]["found_on_disk"] == "case0.nii.gz"
    assert check_final_labels(store, config, version) == []  # recorded: not taken in twice
    # Alice, still holding r0001, is told who changed it.
    with pytest.raises(RevisionConflict, match="r0002 by a label copied in by hand"):
        _submit(store, config, version, "case0", first, "alice", base="r0001")


def test_a_bad_label_copied_over_a_revision_is_refused_in_one_line_and_left_untouched(setup, ds, tmp_path):
    store, config, version = ds
    _submit(store, config, version, "case1", write_nifti(tmp_path / "a.nii.gz", setup.truth["case1"], AFFINE), "alice")
    final = store.label_path("case1", LabelTag.FINAL)
    write_nifti(final, (setup.truth["case1"] * 7).astype(np.uint8), AFFINE)
    placed = final.read_bytes()
    with pytest.raises(LabelFileError) as refused:
        check_final_labels(store, config, version)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("labels/final/case1.nii.gz: label values [7]")
    assert final.read_bytes() == placed
    revisions = LabelRevisions(store.root, store.state.path)
    assert revisions.current_ids() == {"case1": "r0001"}  # nothing stored
    (record,) = store.state.labels(LabelTag.FINAL.value)
    assert record.extra["revision"] == "r0001"
    # A lease (or a listing) meanwhile adopts the file as a revision, unchecked: the check still refuses it.
    LeaseBook(store.state.path, root=store.root).take("case1", "dave", lease_s=1)
    assert revisions.current_ids() == {"case1": "r0002"}
    with pytest.raises(LabelFileError, match="labels/final/case1.nii.gz: label values"):
        check_final_labels(store, config, version)


def test_a_label_copied_in_while_another_annotator_holds_the_case_waits_for_the_lease(setup, ds):
    store, config, version = ds
    LeaseBook(store.state.path, root=store.root).take("case2", "carol", lease_s=600)
    write_nifti(store.label_path("case2", LabelTag.FINAL), setup.truth["case2"], AFFINE)
    with pytest.raises(LabelFileError, match=r"labels/final/case2.nii.gz: .*carol"):
        check_final_labels(store, config, version)
    assert LabelRevisions(store.root, store.state.path).current_ids() == {}


def test_a_label_copied_over_one_at_once_or_with_its_old_mtime_is_still_taken_in(setup, ds, tmp_path):
    # Before: a file replaced within 2 s of its record, or copied with `cp -p` (an old mtime), was trusted
    # unchecked; the replace's own stat (ctime included) tells either apart from the file the submit left.
    store, config, version = ds
    old = write_nifti(tmp_path / "old.nii.gz", np.roll(setup.truth["case0"], 1, axis=1), AFFINE)
    os.utime(old, (1_000_000_000, 1_000_000_000))  # as `cp -p` of a file from 2001 keeps it
    _submit(store, config, version, "case0", write_nifti(tmp_path / "a.nii.gz", setup.truth["case0"], AFFINE), "ada")
    final = store.label_path("case0", LabelTag.FINAL)
    shutil.copy2(old, final)  # at once, with the old file's mtime
    assert check_final_labels(store, config, version) == ["case0"]
    sources = [r.source for r in LabelRevisions(store.root, store.state.path).revisions("case0")]
    assert sources == ["upload", "hand-placed"]
    np.testing.assert_array_equal(load_volume(final).numpy(), np.roll(setup.truth["case0"], 1, axis=1))
    write_nifti(final, (setup.truth["case0"] * 9).astype(np.uint8), AFFINE)  # and a bad one, at once
    with pytest.raises(LabelFileError, match="labels/final/case0.nii.gz: label values"):
        check_final_labels(store, config, version)
