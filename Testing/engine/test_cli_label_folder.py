"""`asfda label submit --datastore DS FOLDER` (issue 23): every label in a folder in one call, through the same
submit path as one label; one line per case, nothing stored for a refused one, exit 2 if any was refused."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_masks import mask_path
from asfda.data.label_revisions import LabelRevisions
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("cli-label-folder"))


def test_a_folder_of_labels_is_submitted_case_by_case(setup, tmp_path, capsys):
    ds = imported_datastore(setup, "folder")
    store = Datastore(ds)
    folder = tmp_path / "new-labels"
    folder.mkdir()
    truth = setup.truth
    write_nifti(folder / "case0.nii.gz", truth["case0"], AFFINE)
    write_nifti(folder / "case1.nii.gz", truth["case1"], AFFINE)
    write_nifti(folder / "case1.mask.nii.gz", np.ones_like(truth["case1"], dtype=np.uint8), AFFINE)
    write_nifti(folder / "case2.nii.gz", (truth["case2"] * 255).astype(np.uint8), AFFINE)
    write_nifti(folder / "case3.nii.gz", truth["case3"], AFFINE)
    write_nifti(folder / "case3.nii", truth["case3"], AFFINE)
    write_nifti(folder / "ghost.nii.gz", truth["case0"], AFFINE)
    write_nifti(folder / "case4.mask.nii.gz", np.ones_like(truth["case4"], dtype=np.uint8), AFFINE)
    (folder / "notes.txt").write_text("x")
    capsys.readouterr()

    assert main(["label", "submit", "--datastore", str(ds), "--author", "Dr A", str(folder)]) == 2
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("stored label for case0 as revision r0001 (values [1], author Dr A, model v0001")
    assert lines[1].startswith("stored label for case1 as revision r0001")
    assert lines[2].startswith("refused case2: case2.nii.gz: label values [255] are not model labels")
    assert lines[3] == "refused case3: 2 files name this case (case3.nii, case3.nii.gz): keep one (nothing stored)"
    assert lines[4].startswith("refused case4: case4.mask.nii.gz: a mask without its label case4.nii.gz")
    assert lines[5] == "refused ghost: case 'ghost' is not in the datastore (nothing stored)"
    assert lines[6] == "2 of 6 label(s) stored, 4 refused" and len(lines) == 7
    assert "skipped notes.txt (not a label volume)" in captured.err

    revisions = LabelRevisions(store.root, store.state.path)
    for case_id in ("case0", "case1"):
        (revision,) = revisions.revisions(case_id)
        assert (revision.source, revision.author) == ("cli", "Dr A")
        assert np.array_equal(store.checked_label(case_id, truth[case_id], AFFINE, [0, 1])[0], truth[case_id])
    assert mask_path(store, "case1").exists() and not mask_path(store, "case0").exists()
    for case_id in ("case2", "case3", "case4"):  # nothing stored: no file, no row, no revision, no history
        assert not store.has_label(case_id, LabelTag.FINAL) and revisions.revisions(case_id) == []
        assert not revisions.history_dir(case_id).exists() or not any(revisions.history_dir(case_id).iterdir())
    assert {r.case_id for r in store.state.labels(LabelTag.FINAL.value)} == {"case0", "case1"}

    # All good: exit 0; a case already labelled needs the same base revision or --overwrite as one submit does.
    good = tmp_path / "good"
    good.mkdir()
    write_nifti(good / "case2.nii.gz", truth["case2"], AFFINE)
    write_nifti(good / "case0.nii.gz", truth["case0"], AFFINE)
    assert main(["label", "submit", "--datastore", str(ds), "--author", "Dr B", str(good)]) == 2
    out = capsys.readouterr().out
    assert "refused case0: case 'case0' already has label revision r0001 by Dr A" in out
    assert "stored label for case2 as revision r0001" in out
    assert main(["label", "submit", "--datastore", str(ds), "--author", "Dr B", "--overwrite", str(good)]) == 0
    out = capsys.readouterr().out
    assert "stored label for case0 as revision r0002, replaced r0001" in out and "2 of 2 label(s) stored" in out


def test_folder_mode_refuses_one_case_options_and_non_folders(setup, tmp_path, capsys):
    ds = imported_datastore(setup, "folder-options")
    folder = tmp_path / "labels"
    folder.mkdir()
    capsys.readouterr()
    assert main(["label", "submit", "--datastore", str(ds), str(folder), "--mask", str(folder / "m.nii.gz")]) == 2
    assert "with a folder, put CASE.mask.nii.gz beside it" in capsys.readouterr().err
    assert main(["label", "submit", "--datastore", str(ds), str(folder), "--base-revision", "r0001"]) == 2
    assert "with a folder only 'none' or --overwrite" in capsys.readouterr().err
    assert main(["label", "submit", "--datastore", str(ds), str(folder)]) == 2
    assert "no label files" in capsys.readouterr().err
    assert main(["label", "submit", "--datastore", str(ds), "case0"]) == 2
    assert "give CASE FILE, or a folder of CASE.nii.gz label files" in capsys.readouterr().err
