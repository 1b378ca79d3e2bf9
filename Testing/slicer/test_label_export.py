"""Submit's label written off the GUI thread (ASFDALib/label_export.py) equals Slicer's own export (issue 20)."""

import numpy as np
import pytest
from ASFDALib import label_export

slicer = pytest.importorskip("slicer")
nib = pytest.importorskip("nibabel")
LABELS = {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}


@pytest.fixture
def case(mrmlScene, tmp_path):
    from ASFDALib import case_reading, segmentation_io
    from test_case_reading import obliqueAffine

    rng = np.random.default_rng(2)
    image = rng.integers(-100, 100, size=(12, 10, 8), dtype=np.int16)
    prediction = np.zeros(image.shape, np.uint8)
    prediction[2:6, 2:6, 2:6] = 1
    prediction[7:9, 3:5, 1:3] = 2
    for key, data in (("image", image), ("prediction", prediction)):
        nib.save(nib.Nifti1Image(data, obliqueAffine()), str(tmp_path / f"{key}.nii.gz"))
    prepared = case_reading.prepareCase(tmp_path / "image.nii.gz", tmp_path / "prediction.nii.gz", LABELS,
                                        reader="nibabel")
    volume = segmentation_io.loadScalarVolume(mrmlScene, prepared.image, "case", prepared.windowLevel)
    segmentation = segmentation_io.loadSegmentationFile(mrmlScene, prepared.segmentation, "case label")
    return mrmlScene, volume, segmentation


def paint(segmentation, volume, name, box, value=1):
    mask = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    mask[box] = value
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, volume)


def slicersExport(scene, segmentation, volume):
    from ASFDALib import segmentation_io

    labelmap = segmentation_io.exportSegmentationToLabelmap(scene, segmentation, volume, LABELS, allowEmpty=True)
    return slicer.util.arrayFromVolume(labelmap).copy()


def assertSameAsSlicer(scene, segmentation, volume):
    ours = label_export.composeLabel(label_export.takeSnapshot(segmentation, volume, LABELS))
    np.testing.assert_array_equal(ours, slicersExport(scene, segmentation, volume))
    return ours


def test_a_painted_case_exports_as_slicer_does(case):
    scene, volume, segmentation = case
    paint(segmentation, volume, "tumor", np.s_[1:3, 1:4, 1:5])
    paint(segmentation, volume, "vessel", np.s_[5:7, 0:2, 0:12])
    ours = assertSameAsSlicer(scene, segmentation, volume)
    assert set(np.unique(ours)) == {0, 1, 2, 3}


def test_overlapping_segments_in_several_layers_and_a_new_order(case):
    scene, volume, segmentation = case
    # Overlaps put segments on separate layers; a later segment is drawn over an earlier one.
    for name, box in (("tumor", np.s_[0:5, 0:5, 0:5]), ("vessel", np.s_[2:7, 2:7, 2:7])):
        mask = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
        mask[box] = 1
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, volume)
    assert segmentation.GetSegmentation().GetNumberOfLayers() > 1
    assertSameAsSlicer(scene, segmentation, volume)
    inner = segmentation.GetSegmentation()
    inner.SetSegmentIndex(inner.GetSegmentIdBySegmentName("vessel"), 0)
    assertSameAsSlicer(scene, segmentation, volume)
    inner.SetSegmentIndex(inner.GetSegmentIdBySegmentName("liver"), inner.GetNumberOfSegments() - 1)
    assertSameAsSlicer(scene, segmentation, volume)


def test_erased_empty_and_unknown_segments(case):
    scene, volume, segmentation = case
    for name in ("liver", "tumor"):
        paint(segmentation, volume, name, np.s_[0:1, 0:1, 0:1], value=0)
    snapshot = label_export.takeSnapshot(segmentation, volume, LABELS)
    assert label_export.isEmpty(snapshot)
    np.testing.assert_array_equal(label_export.composeLabel(snapshot), slicersExport(scene, segmentation, volume))
    segmentation.GetSegmentation().AddEmptySegment("", "kidney")
    with pytest.raises(ValueError, match="'kidney' is not a model label"):
        label_export.takeSnapshot(segmentation, volume, LABELS)


def test_a_transformed_case_is_left_to_slicer(case):
    scene, volume, segmentation = case
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(label_export.SnapshotUnavailable):
        label_export.takeSnapshot(segmentation, volume, LABELS)


def test_the_written_file_reads_back_on_the_volume_grid(case, tmp_path):
    from ASFDALib import segmentation_io
    from test_case_reading import ijkToRas

    scene, volume, segmentation = case
    paint(segmentation, volume, "vessel", np.s_[3:5, 3:5, 3:5])
    pending = label_export.PendingLabel(str(tmp_path / "up" / "case-label.nrrd"),
                                        label_export.takeSnapshot(segmentation, volume, LABELS))
    path = pending.finish()
    back = segmentation_io.loadScalarVolume(scene, path, "back")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(back), slicersExport(scene, segmentation, volume))
    np.testing.assert_allclose(ijkToRas(back), ijkToRas(volume), atol=1e-5)
    assert b"encoding: gzip" in open(path, "rb").read(1000)


@pytest.mark.parametrize("spelling", ["Liver", "LIVER "])
def test_a_terminology_name_submits_as_its_model_label(case, spelling):
    """Issue 20: a terminology pick names the segment "Liver"; the model says "liver". Both exports agree."""
    scene, volume, segmentation = case
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("liver")
    segmentation.GetSegmentation().GetSegment(segmentId).SetName(spelling)
    ours = assertSameAsSlicer(scene, segmentation, volume)
    assert set(np.unique(ours)) == {0, 1, 2}


def test_two_spellings_of_one_label_are_refused_not_overwritten(case):
    scene, volume, segmentation = case
    segmentation.GetSegmentation().AddEmptySegment("", "Liver")
    with pytest.raises(ValueError, match=r"\['liver', 'Liver'\] are the same model label"):
        label_export.takeSnapshot(segmentation, volume, LABELS)
    with pytest.raises(ValueError, match="same model label"):
        slicersExport(scene, segmentation, volume)
