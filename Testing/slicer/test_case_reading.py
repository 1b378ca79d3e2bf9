"""A case decoded in the background (ASFDALib/case_reading.py) opens exactly as the GUI-thread read did (issue 20)."""

import gzip

import numpy as np
import pytest
from ASFDALib import case_reading

nib = pytest.importorskip("nibabel")
LABELS = {"background": 0, "liver": 1, "tumor": 2}


def obliqueAffine():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [-120.0, 35.5, 80.25]
    return affine


def writeCase(tmp_path, prediction=None, compressed=True):
    rng = np.random.default_rng(1)
    image = rng.integers(-1000, 2000, size=(11, 9, 7), dtype=np.int16)  # nibabel's i, j, k
    if prediction is None:
        prediction = np.zeros(image.shape, np.uint8)
        prediction[2:5, 3:6, 1:4] = 1
        prediction[8, 7, 5] = 2
    paths = {}
    for key, data in (("image", image), ("prediction", prediction)):
        raw = nib.Nifti1Image(data, obliqueAffine()).to_bytes()
        path = tmp_path / f"{key}.nii.gz"
        path.write_bytes(gzip.compress(raw) if compressed else raw)
        paths[key] = str(path)
    return paths, image, prediction


def ijkToRas(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def readers():
    """Each reader the module may use; SimpleITK (what Slicer ships) only where it is installed."""
    found = ["nibabel"]
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        pass
    else:
        found.append("SimpleITK")
    return found


@pytest.mark.parametrize("reader", readers())
@pytest.mark.parametrize("compressed", [True, False])
def test_prepared_volumes_read_as_the_downloads_do(mrmlScene, tmp_path, compressed, reader):
    import slicer
    from ASFDALib import segmentation_io

    paths, image, prediction = writeCase(tmp_path, compressed=compressed)
    prepared = case_reading.prepareCase(paths["image"], paths["prediction"], LABELS, reader=reader)
    assert prepared.image.endswith(".nrrd") and prepared.segmentation.endswith(".seg.nrrd")
    if compressed:  # Slicer's own reader of the download, on the GUI thread before
        before = segmentation_io.loadScalarVolume(mrmlScene, paths["image"], "before")
    after = segmentation_io.loadScalarVolume(mrmlScene, prepared.image, "after", prepared.windowLevel)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(after), image.T)
    np.testing.assert_allclose(ijkToRas(after), obliqueAffine(), atol=1e-5)
    if compressed:
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(before), slicer.util.arrayFromVolume(after))
        np.testing.assert_allclose(ijkToRas(before), ijkToRas(after), atol=1e-5)
    display = after.GetDisplayNode()
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(prepared.windowLevel)
    assert not after.GetModifiedSinceRead()
    # The segmentation file holds one segment per model label, each where the prediction has its value,
    # and exports back to the same values on the image's grid (what Submit sends).
    segmentation = segmentation_io.loadSegmentationFile(mrmlScene, prepared.segmentation, "label")
    assert not segmentation.GetModifiedSinceRead()
    assert segmentation_io.segmentNames(segmentation) == ["liver", "tumor"]
    exported = segmentation_io.exportSegmentationToLabelmap(mrmlScene, segmentation, after, LABELS)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(exported), prediction.T)
    # As the GUI-thread import of the download does.
    imported = segmentation_io.loadPredictionAsSegmentation(mrmlScene, paths["prediction"], LABELS, None, after)
    reexported = segmentation_io.exportSegmentationToLabelmap(mrmlScene, imported, after, LABELS)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(reexported), prediction.T)


def test_a_label_the_prediction_lacks_is_an_empty_segment(mrmlScene, tmp_path):
    from ASFDALib import segmentation_io

    labels = dict(LABELS, vessel=3)
    paths, image, prediction = writeCase(tmp_path)
    prepared = case_reading.prepareCase(paths["image"], paths["prediction"], labels,
                                        {"vessel": [0.1, 0.2, 0.3]}, reader="nibabel")
    segmentation = segmentation_io.loadSegmentationFile(mrmlScene, prepared.segmentation, "label")
    assert segmentation_io.segmentNames(segmentation) == ["liver", "tumor", "vessel"]
    vessel = segmentation.GetSegmentation().GetSegment(
        segmentation.GetSegmentation().GetSegmentIdBySegmentName("vessel"))
    assert vessel.GetColor() == pytest.approx((0.1, 0.2, 0.3))


def test_undeclared_prediction_values_are_refused_in_the_background(tmp_path):
    prediction = np.zeros((11, 9, 7), np.uint8)
    prediction[1, 1, 1] = 7
    paths, _, _ = writeCase(tmp_path, prediction=prediction)
    with pytest.raises(ValueError, match=r"does not declare: \[7\]"):
        case_reading.prepareCase(paths["image"], paths["prediction"], LABELS, reader="nibabel")


def test_label_check_and_display_range():
    assert case_reading.undeclaredValues(np.array([0, 1, 2, 2], np.uint8), LABELS) == []
    assert case_reading.undeclaredValues(np.array([0, 3, -1], np.int16), LABELS) == [-1, 3]
    with pytest.raises(ValueError, match="non-integer"):
        case_reading.undeclaredValues(np.array([0.5]), LABELS)
    low, high = case_reading.displayRange(np.arange(-1000, 1000, dtype=np.int16), sample=1)
    assert -1000 < low < -980 and 980 < high < 1000
    assert case_reading.displayRange(np.zeros(5, np.int16)) == (0.0, 1.0)


def test_no_reader_library_leaves_the_reading_to_slicer(tmp_path, monkeypatch):
    monkeypatch.setattr(case_reading, "readerAvailable", lambda: None)
    paths, _, _ = writeCase(tmp_path)
    assert case_reading.prepareCase(paths["image"], paths["prediction"], LABELS) is None


def test_segment_extent_is_the_box_around_its_voxels():
    voxels = np.zeros((4, 5, 6), np.uint8)  # k, j, i
    voxels[1:3, 2, 3:5] = 2
    assert case_reading.segmentExtent(voxels, 2) == "3 4 2 2 1 2"
    assert case_reading.segmentExtent(voxels, 1) == "0 5 0 4 0 3"
