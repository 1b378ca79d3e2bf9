"""`asfda case add` and `asfda label submit`, and label files copied into labels/final/ by hand."""

import shutil

import nrrd
import numpy as np
import pytest
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_revisions import LabelRevisions
from asfda.data.leases import LeaseBook
from asfda.io.volumes import load_volume
from cli_test_data import AFFINE, imported_datastore, make_setup, write_dicom_series
from engine_helpers import blob, write_nifti


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"asfda {command}: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("cli-cases"))


def test_case_add_takes_files_folders_nrrd_and_dicom_and_refuses_what_it_cannot_use(setup, tmp_path, capsys):
    ds = tmp_path / "ds"
    folder = tmp_path / "scans"
    shutil.copytree(setup.scans, folder)
    (folder / "README.txt").write_text("not an image")
    assert main(["case", "add", "--datastore", str(ds), str(folder)]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "README.txt" in captured.err
    assert Datastore(ds).case_ids() == [f"case{i}" for i in range(5)]

    _, image = blob(9)
    lps = np.diag([-1.0, -1.0, 1.0]) @ AFFINE[:3, :]
    nrrd.write(
        str(tmp_path / "scan.nrrd"),
        image,
        {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]},
    )
    assert main(["case", "add", "--datastore", str(ds), "--id", "from-nrrd", str(tmp_path / "scan.nrrd")]) == 0
    series = write_dicom_series(tmp_path / "patient7")
    assert main(["case", "add", "--datastore", str(ds), str(series)]) == 0
    store = Datastore(ds)
    assert store.image_path("from-nrrd").name == "from-nrrd.nrrd" and store.image_path("patient7").is_dir()
    assert sorted(load_volume(store.image_path("patient7")).shape) == [5, 6, 8]
    capsys.readouterr()

    before = sorted(p.name for p in store.images_dir.iterdir())
    (tmp_path / "scan.mha").write_bytes(b"ObjectType = Image\n")
    assert main(["case", "add", "--datastore", str(ds), str(tmp_path / "scan.mha")]) == 2
    assert "scan.mha: unsupported format" in one_line_error(capsys, "case add")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8bnot really gzip")
    assert main(["case", "add", "--datastore", str(ds), str(tmp_path / "broken.nii.gz")]) == 2
    assert "broken.nii.gz: cannot read volume" in one_line_error(capsys, "case add")
    assert main(["case", "add", "--datastore", str(ds), str(setup.scans / "case1.nii.gz")]) == 2
    assert "case 'case1' is already in the datastore" in one_line_error(capsys, "case add")
    assert main(["case", "add", "--datastore", str(ds), "--id", "x", str(setup.scans)]) == 2
    assert "--id names one case" in one_line_error(capsys, "case add")
    assert main(["case", "add", "--datastore", str(ds), "--id", "../x", str(tmp_path / "scan.nrrd")]) == 2
    assert "invalid case id" in one_line_error(capsys, "case add")
    assert sorted(p.name for p in store.images_dir.iterdir()) == before  # nothing written, no temp files left
    assert main(["case", "add", "--datastore", str(ds), "--skip-existing", str(setup.scans)]) == 0
    assert "0 case(s) added, 7 in the datastore" in capsys.readouterr().out


def test_label_submit_checks_like_the_upload_route_and_records_the_author(setup, tmp_path, capsys):
    ds = imported_datastore(setup, "submit")
    store = Datastore(ds)
    capsys.readouterr()
    label = setup.truth["case1"]
    bad = {
        "mask255.nii.gz": (label * 255, AFFINE, "label values [255] are not model labels [0, 1]"),
        "shape.nii.gz": (label[:-1], AFFINE, "does not match image shape"),
        "moved.nii.gz": (label, np.diag([1.0, 1.0, 2.0, 1.0]), "label spacing"),
        "empty.nii.gz": (np.zeros_like(label), AFFINE, "label volume is empty"),
    }
    for name, (data, affine, message) in bad.items():
        write_nifti(tmp_path / name, data.astype(np.uint8), affine)
        assert main(["label", "submit", "--datastore", str(ds), "case1", str(tmp_path / name)]) == 2
        err = one_line_error(capsys, "label submit")
        assert name in err and message in err, err
    (tmp_path / "label.png").write_bytes(b"\x89PNG")
    assert main(["label", "submit", "--datastore", str(ds), "case1", str(tmp_path / "label.png")]) == 2
    error = one_line_error(capsys, "label submit")
    assert "label.png: unsupported label format (use NIfTI .nii/.nii.gz or NRRD .nrrd)" in error
    assert main(["label", "submit", "--datastore", str(ds), "nope", str(tmp_path / "mask255.nii.gz")]) == 2
    assert "case 'nope' is not in the datastore" in one_line_error(capsys, "label submit")
    assert not store.has_label("case1", LabelTag.FINAL) and not store.state.labels(LabelTag.FINAL.value)

    assert (
        main(["label", "submit", "--datastore", str(ds), "case1", str(tmp_path / "empty.nii.gz"), "--allow-empty"]) == 0
    )
    write_nifti(tmp_path / "good.nii", label, AFFINE)
    good = ["label", "submit", "--datastore", str(ds), "--author", "Dr  A", "case1", str(tmp_path / "good.nii")]
    # The empty label (no author) is revision r0001: Dr A must say she corrected that one.
    assert main(good) == 2
    assert "revision r0001 by an unnamed author" in one_line_error(capsys, "label submit")
    assert main(good + ["--base-revision", "r0001"]) == 0
    assert "stored label for case1 as revision r0002, replaced r0001 (values [1], author Dr A, model v0001)" in (
        capsys.readouterr().out
    )
    (record,) = store.state.labels(LabelTag.FINAL.value)
    assert (record.case_id, record.author, record.model_version) == ("case1", "Dr A", "v0001")
    assert np.array_equal(load_volume(store.label_path("case1", LabelTag.FINAL)).numpy(), label)


def test_labels_copied_into_labels_final_are_checked_before_use(setup, capsys):
    ds = imported_datastore(setup, "copied")
    store = Datastore(ds)
    final = store.label_dir(LabelTag.FINAL)
    capsys.readouterr()
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 2
    err = one_line_error(capsys, "adapt")
    assert "no clinician labels yet in" in err and "labels/final" in err and "asfda label submit" in err

    write_nifti(final / "case2.nii.gz", (setup.truth["case2"] * 255).astype(np.uint8), AFFINE)
    bad_bytes = (final / "case2.nii.gz").read_bytes()
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 2
    assert "labels/final/case2.nii.gz: label values [255] are not model labels" in one_line_error(capsys, "adapt")
    assert (final / "case2.nii.gz").read_bytes() == bad_bytes  # left as it was, nothing recorded
    assert not store.state.labels(LabelTag.FINAL.value) and not LabelRevisions(store.root).current_ids()
    assert main(["rank", "--datastore", str(ds)]) == 2
    assert "labels/final/case2.nii.gz" in one_line_error(capsys, "rank")
    (final / "case2.nii.gz").unlink()
    (final / "notes.txt").write_text("x")
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 2
    assert "labels/final/notes.txt: not a label file" in one_line_error(capsys, "adapt")
    (final / "notes.txt").unlink()
    write_nifti(final / "ghost.nii.gz", setup.truth["case2"], AFFINE)
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 2
    assert "labels/final/ghost.nii.gz: no image for case 'ghost'" in one_line_error(capsys, "adapt")
    (final / "ghost.nii.gz").unlink()

    # A good label saved as .nii (not .nii.gz) is found, checked, recorded and used.
    write_nifti(final / "case2.nii", setup.truth["case2"], AFFINE)
    assert main(["adapt", "--datastore", str(ds), "--steps", "1", "--no-pseudo"]) == 0
    captured = capsys.readouterr()
    assert "checked and recorded label found in labels/final/ for case case2" in captured.err
    assert "new active model v0002" in captured.out
    assert sorted(p.name for p in final.iterdir()) == ["case2.nii.gz", "history"]
    assert [r.case_id for r in store.state.labels(LabelTag.FINAL.value)] == ["case2"]
    # Submitted like an upload: the case's first revision, in the audit, so a later submit cannot silently replace it.
    assert [r.source for r in LabelRevisions(store.root).revisions("case2")] == ["hand-placed"]
    (submitted,) = [
        e for e in LeaseBook(store.state.path, root=store.root).audit("case2") if "submitted" in e["action"]
    ]
    assert submitted["detail"]["source"] == "hand-placed" and submitted["detail"]["found_on_disk"] == "case2.nii"
