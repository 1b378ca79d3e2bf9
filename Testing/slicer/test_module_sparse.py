"""Sparse mode in the unmodified ASFDA.py widget (issue 22 item 2): progress, Next slice, the masked submit."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import pythonqt  # noqa: E402
from test_module_harness import harnessVolume, loadFirstCase, paint  # noqa: E402

REQUESTED = {"axis": 2, "indices": [1, 3, 5, 7], "rule": "even"}  # k slices of the fake worker's (8-slice) image


def addSliceViews(scene):
    """The three slice nodes Slicer's layout creates (the harness has no views): axial, sagittal, coronal."""
    nodes = {}
    for name, normal, transverse in (("Red", (0, 0, 1), (-1, 0, 0)), ("Yellow", (1, 0, 0), (0, -1, 0)),
                                     ("Green", (0, 1, 0), (-1, 0, 0))):
        node = slicer.vtkMRMLSliceNode()
        node.SetLayoutName(name)
        node.SetSliceToRASByNTP(*normal, *transverse, 0, 0, 0, 0)
        nodes[name] = scene.AddNode(node)
    return nodes


def sliceOffsetAlongNormal(node):
    m = node.GetSliceToRAS()
    normal = np.array([m.GetElement(r, 2) for r in range(3)])
    return float(normal @ np.array([m.GetElement(r, 3) for r in range(3)]))


def rasOfK(volume, k):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint((0, 0, k, 1))[2]


def test_sparse_case_progress_next_slice_and_masked_submit(harness, worker):
    worker.requestedSlices["case-a"] = REQUESTED
    views = addSliceViews(slicer.mrmlScene)
    segmentationNode = loadFirstCase(harness, worker)
    ui, widget = harness.ui, harness.widget
    assert ui.nextSliceButton.visible and ui.sparseSlicesLabel.visible
    assert ui.sparseSlicesLabel.text.startswith("requested slices: 0 of 4 done")  # the prediction is not work
    caseCell = ui.worklistTable.item(0, harness.module.CASE_COLUMN)
    assert caseCell.text() == "case-a" and "Requested slices along axis 2: 1, 3, 5, 7" in caseCell.toolTip()
    assert "Requested" not in ui.worklistTable.item(1, harness.module.CASE_COLUMN).toolTip()

    # Next slice puts the axial view (the k axis runs along S here) on the first requested slice.
    volume = harnessVolume(segmentationNode)
    greenBefore = sliceOffsetAlongNormal(views["Green"])
    assert ui.nextSliceButton.click()
    assert sliceOffsetAlongNormal(views["Red"]) == pytest.approx(rasOfK(volume, 1))
    assert sliceOffsetAlongNormal(views["Green"]) == greenBefore
    assert "slice 1 shown in the Red view" in ui.sparseSlicesLabel.text

    # Paint the tumor on requested slices 3 and 5 (numpy k, j, i).
    segmentation = segmentationNode.GetSegmentation()
    tumorId = segmentation.GetSegmentIdBySegmentName("tumor")
    painted = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    painted[3, 0:2, 0:2] = painted[5, 7:9, 0:3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, segmentationNode, tumorId, volume)
    widget.refreshSparseSlices(force=True)
    assert ui.sparseSlicesLabel.text.startswith("requested slices: 2 of 4 done (axis 2: 1, 3 done, 5 done, 7)")

    assert ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.labels, message="label upload")
    mask, label = worker.masks["case-a"], worker.labels["case-a"]  # (i, j, k)
    expected = np.zeros(mask.shape, np.uint8)
    expected[:, :, [3, 5]] = 1  # the two painted slices, whole, background included
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.uint8 and mask.shape == label.shape == worker.prediction.shape
    assert not label[mask == 0].any()  # nothing outside the annotated region: the worker refuses it
    np.testing.assert_array_equal(label[..., 3] == 2, painted[3].T == 1)
    # The prediction's liver on the done slices went with them, where the tumor does not cover it.
    liverSlice = worker.prediction[..., 5] == 1
    assert (label[..., 5][liverSlice & (painted[5].T == 0)] == 1).all()
    assert harness.slotErrors == []


def test_submit_with_no_requested_slice_done_asks_first(harness, worker):
    worker.requestedSlices["case-a"] = REQUESTED
    loadFirstCase(harness, worker)
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert harness.ui.submitLabelButton.click()
    assert any("None of the 4 requested slices of case-a is done" in d["text"] for d in harness.dialogs)
    assert harness.widget.tasks.waitUntilFinished(5)
    harness.tick()
    assert "case-a" not in worker.labels
    # Confirmed: the whole segmentation goes as a fully annotated label, without a mask.
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Ok)
    assert harness.ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.labels, message="label upload")
    assert "case-a" not in worker.masks
    assert harness.slotErrors == []


def test_whole_volume_case_and_scene_close_hide_the_sparse_controls(harness, worker):
    worker.requestedSlices["case-a"] = REQUESTED
    loadFirstCase(harness, worker)
    ui = harness.ui
    assert ui.nextSliceButton.visible
    slicer.mrmlScene.Clear(False)  # File > Close Scene: the case is gone, so are its requested slices
    assert not ui.nextSliceButton.visible and not ui.sparseSlicesLabel.visible
    assert harness.widget.sparse is None
    harness.widget.loadCase("case-b")  # as a double-click on its row does
    harness.tickUntil(lambda: harness.widget._parameterNode.currentCaseId == "case-b", message="case-b")
    assert not ui.nextSliceButton.visible and not ui.sparseSlicesLabel.visible  # a whole-volume case
    assert harness.slotErrors == []


def test_a_segment_named_after_no_label_leaves_the_tick_alone(harness, worker):
    """The timer-driven refresh must not raise every tick; the label says why the marks stopped."""
    worker.requestedSlices["case-a"] = REQUESTED
    segmentationNode = loadFirstCase(harness, worker)
    harness.widget._sparseRefreshedAt = 0.0
    segmentationNode.GetSegmentation().GetNthSegment(0).SetName("spleen")
    paint(segmentationNode, "spleen")
    harness.widget._sparseRefreshedAt = 0.0
    harness.tick()
    assert "not updated: Segment 'spleen' is not a model label" in harness.ui.sparseSlicesLabel.text
    assert harness.slotErrors == []


def test_rank_asks_for_slices_per_volume(harness, worker):
    """The module can start a sparse rank: the spin box's value goes as slices_per_volume (0 leaves it out)."""
    harness.enter()
    harness.connect(worker.url)
    ui = harness.ui
    assert ui.rankButton.click()
    harness.tickUntil(lambda: worker.rankBodies, message="whole-volume rank")
    harness.tickUntil(lambda: ui.rankButton.enabled, message="rank finished")
    ui.slicesPerVolumeSpinBox.value = 4
    assert harness.widget._parameterNode.slicesPerVolume == 4
    assert ui.rankButton.click()
    harness.tickUntil(lambda: len(worker.rankBodies) == 2, message="sparse rank")
    assert "slices_per_volume" not in worker.rankBodies[0]
    assert worker.rankBodies[1]["slices_per_volume"] == 4 and worker.rankBodies[1]["slice_axis"] == "auto"
    assert harness.slotErrors == []


def test_requested_slices_count_on_the_workers_grid_when_slicer_flips_it(harness, worker):
    """The real worker's test found it: Slicer loads a left-handed image with its k axis flipped, so worker
    slice 3 is volume slice 4 of 8; the done marks, the jump and the mask follow the worker's numbers."""
    worker.affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    worker.requestedSlices["case-a"] = REQUESTED
    views = addSliceViews(slicer.mrmlScene)
    segmentationNode = loadFirstCase(harness, worker)
    ui, widget = harness.ui, harness.widget
    volume = harnessVolume(segmentationNode)
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    assert matrix.GetElement(2, 2) < 0  # the flip this test is about
    assert ui.nextSliceButton.click()  # the first requested slice on the volume: worker slice 7
    assert "slice 7 shown in the Red view" in ui.sparseSlicesLabel.text
    assert sliceOffsetAlongNormal(views["Red"]) == pytest.approx(rasOfK(volume, 0))  # worker 7 = volume 0 of 8
    tumorId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName("tumor")
    painted = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    painted[7 - 3, 0:2, 0:2] = 1  # worker slice 3
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, segmentationNode, tumorId, volume)
    widget.refreshSparseSlices(force=True)
    assert ui.sparseSlicesLabel.text.startswith("requested slices: 1 of 4 done (axis 2: 1, 3 done, 5, 7)")
    assert ui.nextSliceButton.click()  # leaves worker slice 7 accepted, shows worker slice 5 (volume 2)
    assert sliceOffsetAlongNormal(views["Red"]) == pytest.approx(rasOfK(volume, 2))
    assert ui.sparseSlicesLabel.text.startswith("requested slices: 2 of 4 done (axis 2: 1, 3 done, 5, 7 done)")
    assert ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.masks, message="label upload")
    mask = worker.masks["case-a"]
    # The fake worker keeps the file's own voxel order; the NRRD's k runs the other way than the worker's
    # image, so map its annotated slices through RAS as the real worker's reorientation does.
    annotatedK = sorted(7 - k for k in np.flatnonzero(mask.any(axis=(0, 1))))
    assert annotatedK == [3, 7] and mask.sum() == 2 * 10 * 9
    assert harness.slotErrors == []


def test_requested_slice_outside_the_volume_is_one_line_and_no_marks(harness, worker):
    worker.requestedSlices["case-a"] = {"axis": 2, "indices": [1, 8], "rule": "even"}  # the image has 8 slices
    loadFirstCase(harness, worker)
    assert any("Requested slice 8 lies outside the volume's 8 slices along axis 2" in d["text"]
               for d in harness.dialogs)
    assert not harness.ui.nextSliceButton.visible and harness.widget.sparse is None
    assert harness.slotErrors == []
