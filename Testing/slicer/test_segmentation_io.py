"""MRML conversions on real slicer-core nodes: geometry and label values must survive exactly."""

import nibabel as nib
import numpy as np
import pytest

# slicer-core (and the vtk it pins) ships for CPython 3.11 on x86_64 Linux only.
slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from ASFDALib import segmentation_io as sio  # noqa: E402

LABELS = {"background": 0, "liver": 1, "tumor": 2}
COLORS = {"liver": [0.8, 0.2, 0.1], "tumor": [0.1, 0.9, 0.3]}


def ijkToRas(node):
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def makeReferenceVolume(scene):
    """Flipped first axis, anisotropic spacing, non-zero origin: geometry a copy-paste bug would break."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reference")
    volume.SetIJKToRASDirections(-1, 0, 0, 0, 1, 0, 0, 0, 1)
    volume.SetSpacing(0.7, 1.3, 2.5)
    volume.SetOrigin(12.5, -40.0, 7.25)
    image = vtk.vtkImageData()
    image.SetDimensions(9, 7, 5)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    volume.SetAndObserveImageData(image)
    slicer.util.updateVolumeFromArray(volume, np.arange(5 * 7 * 9, dtype=np.int16).reshape(5, 7, 9))
    return volume


def writePrediction(path, volume, labelArrayKJI):
    """Write a NIfTI whose affine is the volume's geometry in RAS, as nibabel stores it."""
    affine = ijkToRas(volume)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labelArrayKJI.transpose(2, 1, 0)).astype(np.uint8), affine),
             str(path))


def multiLabelArray():
    a = np.zeros((5, 7, 9), np.uint8)
    a[1:3, 2:5, 1:4] = 1
    a[3, 4:6, 6:8] = 2
    return a


def test_prediction_file_becomes_prefilled_segmentation(mrmlScene, tmp_path):
    volume = makeReferenceVolume(mrmlScene)
    expected = multiLabelArray()
    writePrediction(tmp_path / "pred.nii.gz", volume, expected)

    seg = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "pred.nii.gz", LABELS, COLORS, volume)

    assert sio.segmentNames(seg) == ["liver", "tumor"]
    segmentation = seg.GetSegmentation()
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    assert liver.GetColor() == pytest.approx((0.8, 0.2, 0.1), abs=1 / 255)  # tables store 8-bit colors
    # Voxel-exact content on the reference grid proves RAS/LPS and axis order were handled.
    for name, value in (("liver", 1), ("tumor", 2)):
        segId = segmentation.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg, segId, volume)
        np.testing.assert_array_equal(mask > 0, expected == value)
    # Temporary import nodes must not pile up in the clinician's scene.
    assert mrmlScene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0
    assert mrmlScene.GetNodesByClass("vtkMRMLColorTableNode").GetNumberOfItems() == 0


def test_labels_missing_from_prediction_get_empty_segments(mrmlScene, tmp_path):
    volume = makeReferenceVolume(mrmlScene)
    only = np.zeros((5, 7, 9), np.uint8)
    only[2, 2, 2] = 2
    writePrediction(tmp_path / "pred.nii.gz", volume, only)
    seg = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "pred.nii.gz", LABELS, None, volume)
    assert sorted(sio.segmentNames(seg)) == ["liver", "tumor"]


def test_prediction_with_undeclared_value_is_rejected(mrmlScene, tmp_path):
    volume = makeReferenceVolume(mrmlScene)
    bad = multiLabelArray()
    bad[0, 0, 0] = 5
    writePrediction(tmp_path / "pred.nii.gz", volume, bad)
    with pytest.raises(ValueError, match=r"\[5\]"):
        sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "pred.nii.gz", LABELS, COLORS, volume)
    assert mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_round_trip_keeps_geometry_and_label_values(mrmlScene, tmp_path):
    volume = makeReferenceVolume(mrmlScene)
    expected = multiLabelArray()
    writePrediction(tmp_path / "pred.nii.gz", volume, expected)
    seg = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "pred.nii.gz", LABELS, COLORS, volume)
    # Reordering segments must not renumber labels: values come from names, not positions.
    segmentation = seg.GetSegmentation()
    segmentation.SetSegmentIndex(segmentation.GetSegmentIdBySegmentName("tumor"), 0)

    labelmap = sio.exportSegmentationToLabelmap(mrmlScene, seg, volume, LABELS)

    assert labelmap.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    np.testing.assert_allclose(ijkToRas(labelmap), ijkToRas(volume), atol=1e-9)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), expected)

    path = sio.saveLabelmap(mrmlScene, labelmap, tmp_path / "label.nii.gz")
    saved = nib.load(path)
    world = saved.affine @ np.array([2, 3, 1, 1.0])  # voxel i=2, j=3, k=1 of the file
    ref = ijkToRas(volume)
    ijk = np.linalg.solve(ref, world)[:3].round().astype(int)
    assert np.asarray(saved.dataobj)[2, 3, 1] == expected[ijk[2], ijk[1], ijk[0]]
    assert sorted(np.unique(np.asarray(saved.dataobj)).tolist()) == [0, 1, 2]


def test_export_rejects_unknown_segment_names_and_empty_segmentations(mrmlScene):
    volume = makeReferenceVolume(mrmlScene)
    seg = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    seg.GetSegmentation().AddEmptySegment("", "liver")
    with pytest.raises(ValueError, match="empty"):
        sio.exportSegmentationToLabelmap(mrmlScene, seg, volume, LABELS)
    seg.GetSegmentation().AddEmptySegment("", "Segment_7")
    with pytest.raises(ValueError, match="Segment_7"):
        sio.exportSegmentationToLabelmap(mrmlScene, seg, volume, LABELS)
    with pytest.raises(ValueError, match="reference volume"):
        sio.exportSegmentationToLabelmap(mrmlScene, seg, None, LABELS)


def test_export_file_for_upload(mrmlScene, tmp_path):
    volume = makeReferenceVolume(mrmlScene)
    seg = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segId = seg.GetSegmentation().AddEmptySegment("", "tumor")
    mask = np.zeros((5, 7, 9), np.uint8)
    mask[2:4, 1:3, 4:6] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, seg, segId, volume)

    path = sio.exportSegmentationToFile(mrmlScene, seg, volume, LABELS, str(tmp_path), "case-01")

    assert path.endswith("case-01-label.nii.gz")
    data = np.asarray(nib.load(path).dataobj)
    assert data.shape == (9, 7, 5)
    assert sorted(np.unique(data).tolist()) == [0, 2]
    assert int((data == 2).sum()) == int(mask.sum())


def test_empty_segmentation_is_allowed_when_confirmed_and_leaves_no_nodes(mrmlScene, tmp_path):
    """Findings 10 (negative cases) and 17 (nodes left behind by each export)."""
    volume = makeReferenceVolume(mrmlScene)
    seg = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    seg.GetSegmentation().AddEmptySegment("", "liver")
    seg.CreateDefaultDisplayNodes()  # as every loaded case has
    nodesBefore = mrmlScene.GetNumberOfNodes()
    with pytest.raises(sio.EmptyLabelError):
        sio.exportSegmentationToFile(mrmlScene, seg, volume, LABELS, str(tmp_path), "neg")
    path = sio.exportSegmentationToFile(mrmlScene, seg, volume, LABELS, str(tmp_path), "neg", allowEmpty=True)
    assert not np.asarray(nib.load(path).dataobj).any()
    left = [mrmlScene.GetNthNode(i).GetClassName() for i in range(nodesBefore, mrmlScene.GetNumberOfNodes())]
    assert left == [], left


def test_removing_a_node_removes_its_display_and_storage_nodes(mrmlScene):
    volume = makeReferenceVolume(mrmlScene)
    volume.CreateDefaultDisplayNodes()
    volume.AddDefaultStorageNode()
    before = mrmlScene.GetNumberOfNodes()
    sio.removeNodeWithDisplayNodes(mrmlScene, volume)
    assert mrmlScene.GetNumberOfNodes() == before - 3
    sio.removeNodeWithDisplayNodes(mrmlScene, volume)  # already gone: nothing to do


@pytest.fixture
def colorNames(mrmlScene, monkeypatch, request):
    """Slicer 5.8's (or a later release's) colour-name behaviour on this scene, with that version reported."""
    import types

    from harness.mrml58 import ColorNames58

    version = request.param
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(majorVersion=version[0], minorVersion=version[1]),
                        raising=False)
    shim = ColorNames58(slicer, mrmlScene, version)
    yield shim
    shim.close()


@pytest.mark.parametrize("colorNames", [(5, 8), (5, 10), (5, 12)], indirect=True, ids=["5.8", "5.10", "5.12"])
def test_label_names_survive_each_releases_colour_nodes(mrmlScene, tmp_path, colorNames):
    """Issue 20, finding 1: on 5.8 the table needs SetNamesInitialised(True); on 5.10+ the call only logs an error."""
    volume = makeReferenceVolume(mrmlScene)
    expected = multiLabelArray()
    writePrediction(tmp_path / "pred.nii.gz", volume, expected)
    seg = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "pred.nii.gz", LABELS, COLORS, volume)
    assert sio.segmentNames(seg) == ["liver", "tumor"]  # not "R=0.800 G=0.200 ..." plus two empty segments
    labelmap = sio.exportSegmentationToLabelmap(mrmlScene, seg, volume, LABELS)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), expected)
    if colorNames.version < (5, 10):
        assert colorNames.calls  # the import's and the export's tables
    else:
        assert colorNames.calls == []


@pytest.mark.parametrize("colorNames", [(5, 8)], indirect=True, ids=["5.8"])
def test_the_58_shim_renames_a_table_whose_flag_is_not_set(mrmlScene, colorNames):
    """The stand-in itself: without the call, 5.8 names every entry after its colour (what finding 1 saw)."""
    table = mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode")
    table.SetTypeToUser()
    table.SetNumberOfColors(2)
    table.SetColor(1, "liver", 1.0, 0.0, 0.2, 1.0)  # colours are stored as bytes: 0.2 reads back 0.200
    colorNames.regenerate(table)
    assert table.GetColorName(1) == "R=1.000 G=0.000 B=0.200 A=1.000"
    assert table.GetColorIndexByName("liver") == -1
