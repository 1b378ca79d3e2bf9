import gzip

import nibabel as nib
import numpy as np
import pytest
from asfda.core.case_ids import validate_case_id
from asfda.core.errors import CorruptImage, EmptyLabel, GeometryMismatch, InvalidCaseId, UnknownCase, UnknownLabelValues
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import Geometry, load_volume
from cli_test_data import write_dicom_series
from engine_helpers import blob, write_nifti


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "..", "", ".hidden", "a\\b", "x" * 200, "case..1", "é"])
def test_path_like_case_ids_are_rejected(bad):
    with pytest.raises(InvalidCaseId, match="invalid case id"):
        validate_case_id(bad)


def test_good_case_ids_pass():
    assert validate_case_id("case_001.T1-w") == "case_001.T1-w"


def test_datastore_never_resolves_outside_itself(tmp_path):
    store = Datastore(tmp_path / "ds")
    with pytest.raises(InvalidCaseId):
        store.label_path("../../evil", LabelTag.FINAL)
    with pytest.raises(UnknownCase, match="not in the datastore"):
        store.image_path("missing")


def test_corrupt_and_truncated_files_give_clear_errors(tmp_path):
    label, image = blob(0)
    good = write_nifti(tmp_path / "good.nii.gz", image)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CorruptImage, match="truncated.nii.gz: cannot read volume"):
        load_volume(truncated)
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"not an image at all" * 10)
    with pytest.raises(CorruptImage, match="garbage.nii"):
        load_volume(garbage)
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(CorruptImage, match="unsupported format"):
        load_volume(tmp_path / "x.png")
    nan = image.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(CorruptImage, match="NaN"):
        load_volume(write_nifti(tmp_path / "nan.nii.gz", nan))
    with gzip.open(tmp_path / "fourd.nii.gz", "wb") as handle:
        handle.write(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)).to_bytes())
    with pytest.raises(CorruptImage, match="expected a 3D volume"):
        load_volume(tmp_path / "fourd.nii.gz")


def test_nrrd_and_nifti_give_the_same_ras_geometry(tmp_path):
    import nrrd

    _, image = blob(1)
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    nifti = load_volume(write_nifti(tmp_path / "a.nii.gz", image, affine))
    # NRRD stores LPS: flip the first two axes of the RAS affine.
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :]
    nrrd.write(
        str(tmp_path / "a.nrrd"),
        image,
        {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]},
    )
    from_nrrd = load_volume(tmp_path / "a.nrrd")
    assert np.allclose(Geometry.of(nifti).affine, Geometry.of(from_nrrd).affine, atol=1e-5)
    assert np.allclose(np.asarray(nifti), np.asarray(from_nrrd))


def test_dicom_series_folder_reads(tmp_path):
    series = write_dicom_series(tmp_path / "series")
    volume = load_volume(series)
    assert sorted(volume.shape) == [5, 6, 8]
    assert np.allclose(sorted(Geometry.of(volume).spacing), [0.8, 0.8, 2.5], atol=1e-4)


def _store_with_case(tmp_path):
    store = Datastore(tmp_path / "ds")
    label, image = blob(2)
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    write_nifti(store.images_dir / "case1.nii.gz", image, affine)
    return store, label, affine


def test_label_geometry_values_and_emptiness_are_checked(tmp_path):
    store, label, affine = _store_with_case(tmp_path)
    with pytest.raises(GeometryMismatch, match="shape"):
        store.save_label("case1", LabelTag.FINAL, label[:-1], affine, [0, 1])
    moved = affine.copy()
    moved[:3, 3] = [5, 0, 0]
    with pytest.raises(GeometryMismatch, match="origin"):
        store.save_label("case1", LabelTag.FINAL, label, moved, [0, 1])
    with pytest.raises(GeometryMismatch, match="spacing"):
        store.save_label("case1", LabelTag.FINAL, label, np.diag([1.0, 1.0, 2.0, 1.0]), [0, 1])
    angle = np.deg2rad(10)
    rotated = affine.copy()
    rotated[:3, :3] = (
        np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ affine[:3, :3]
    )
    with pytest.raises(GeometryMismatch, match="direction"):
        store.save_label("case1", LabelTag.FINAL, label, rotated, [0, 1])
    flipped = affine.copy()
    flipped[0, 0] = -1.5  # same voxels mirrored in world space: lands elsewhere
    with pytest.raises(GeometryMismatch):
        store.save_label("case1", LabelTag.FINAL, label, flipped, [0, 1])
    with pytest.raises(UnknownLabelValues, match=r"\[7\]"):
        store.save_label("case1", LabelTag.FINAL, label * 7, affine, [0, 1])
    with pytest.raises(EmptyLabel, match="empty"):
        store.save_label("case1", LabelTag.FINAL, np.zeros_like(label), affine, [0, 1])
    assert not store.has_label("case1", LabelTag.FINAL)  # nothing half-written after the refusals
    record = store.save_label("case1", LabelTag.FINAL, label, affine, [0, 1], author="dr-a")
    assert record.author == "dr-a" and store.case_status("case1") == "final"
    stored = load_volume(store.label_path("case1", LabelTag.FINAL))
    assert np.array_equal(np.asarray(stored).astype(np.uint8), label)
    assert [r.case_id for r in store.state.labels("final")] == ["case1"]
    assert not list(store.label_dir(LabelTag.FINAL).glob(".*tmp*"))


def test_label_stored_with_flipped_axis_order_is_accepted_in_world_space(tmp_path):
    store = Datastore(tmp_path / "ds")
    label, image = blob(4)
    affine = np.diag([-2.0, 1.5, 3.0, 1.0])  # left-handed: writers may flip an axis when saving labels
    affine[:3, 3] = [30.0, -10.0, 5.0]
    write_nifti(store.images_dir / "case1.nii.gz", image, affine)
    flipped_affine = affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, label.shape[2] - 1], [0, 0, 0, 1.0]])
    store.save_label("case1", LabelTag.FINAL, label[:, :, ::-1], flipped_affine, [0, 1])
    stored = load_volume(store.label_path("case1", LabelTag.FINAL))
    assert np.array_equal(np.asarray(stored).astype(np.uint8), label)
    assert np.allclose(Geometry.of(stored).affine, affine)
    # The same flipped voxels claimed on the image's own affine are a different label: still stored as
    # given, but a label shifted in world space is refused.
    shifted = flipped_affine.copy()
    shifted[:3, 3] += [0, 0, 3.0]
    with pytest.raises(GeometryMismatch, match="origin"):
        store.save_label("case1", LabelTag.FINAL, label[:, :, ::-1], shifted, [0, 1])
