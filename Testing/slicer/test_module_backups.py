"""The copy of unsubmitted edits a scene close keeps is written off the GUI thread (issue 20, "Submit and every
backup about 2 s"; the scene-close backup was left on the GUI thread). Where the clinician still decides (the
question before another case) and at exit, it is written before the message, as before."""

import threading

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import pythonqt  # noqa: E402
from test_module_harness import loadFirstCase  # noqa: E402


def paintLiver(segmentationNode, volumeNode):
    mask = np.zeros(slicer.util.arrayFromVolume(volumeNode).shape, dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName("liver")
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volumeNode)
    return mask


@pytest.fixture
def writes(monkeypatch):
    """Which thread writes each backup label, and a gate a test can hold a write at."""
    from ASFDALib import label_export

    record = {"threads": [], "gate": threading.Event(), "fail": None}
    record["gate"].set()
    real = label_export.writeLabel

    def writeLabel(snapshot, path):
        record["threads"].append(threading.current_thread() is threading.main_thread())
        assert record["gate"].wait(10)
        if record["fail"]:
            raise OSError(record["fail"])
        return real(snapshot, path)

    monkeypatch.setattr(label_export, "writeLabel", writeLabel)
    return record


def test_a_scene_close_writes_its_copy_in_the_background(harness, worker, tmp_path, writes):
    segmentationNode = loadFirstCase(harness, worker)
    volumeNode = harness.widget._parameterNode.currentVolume
    expected = paintLiver(segmentationNode, volumeNode).astype(np.uint8)  # the liver (value 1) as painted...
    expected[worker.prediction.T == 2] = 2  # ...and the predicted tumour, untouched (worker arrays are i, j, k)
    before = slicer.util.arrayFromVolume(volumeNode).shape
    writes["gate"].clear()  # the write waits until the warning has been shown and the scene is gone
    pythonqt.WHILE_MODAL.append(lambda dialog: writes["gate"].set())
    slicer.mrmlScene.Clear(False)
    warning = harness.dialogs[-1]
    assert "not submitted" in warning["text"] and warning["icon"] == pythonqt.QMessageBox.Warning
    assert harness.widget.backups.wait(10)
    assert writes["threads"] == [False]  # written by another thread than the GUI's (read once it has run)
    backups = list((tmp_path / "scenes").rglob("case-a-label.nrrd"))
    assert len(backups) == 1 and str(backups[0]) in warning["text"]
    from ASFDALib import case_reading

    written = case_reading.readVolumeArray(str(backups[0])).voxels  # (k, j, i), as arrayFromVolume
    assert written.shape == before
    np.testing.assert_array_equal(written, expected)  # the painted voxels, read back after the nodes left
    assert (backups[0].parent / "effort.json").is_file()
    harness.tick()
    assert harness.slotErrors == [] and harness.dialogs[-1] is warning  # no error reported


def test_a_background_write_that_fails_is_reported(harness, worker, writes):
    segmentationNode = loadFirstCase(harness, worker)
    paintLiver(segmentationNode, harness.widget._parameterNode.currentVolume)
    writes["fail"] = "disk full"
    slicer.mrmlScene.Clear(False)
    assert harness.widget.backups.wait(10)
    harness.tickUntil(lambda: "could not be written" in harness.dialogs[-1]["text"], message="failure shown")
    assert "disk full" in harness.dialogs[-1]["text"] and harness.dialogs[-1]["icon"] == pythonqt.QMessageBox.Critical


def test_cleanup_waits_for_a_copy_still_being_written(harness, worker, tmp_path, writes):
    segmentationNode = loadFirstCase(harness, worker)
    paintLiver(segmentationNode, harness.widget._parameterNode.currentVolume)
    writes["gate"].clear()
    slicer.mrmlScene.Clear(False)
    threading.Timer(0.3, writes["gate"].set).start()  # still writing when Slicer starts to exit
    harness.widget.cleanup()
    assert len(list((tmp_path / "scenes").rglob("case-a-label.nrrd"))) == 1


def test_the_question_before_another_case_is_asked_after_the_copy_is_written(harness, worker, tmp_path, writes):
    """The clinician decides on it, so the question comes once the file exists (a failure shows in it)."""
    segmentationNode = loadFirstCase(harness, worker)
    paintLiver(segmentationNode, harness.widget._parameterNode.currentVolume)
    seen = []
    pythonqt.WHILE_MODAL.append(lambda dialog: seen.append(list((tmp_path / "scenes").rglob("case-a-label.nrrd"))))
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert harness.ui.nextCaseButton.click()
    assert writes["threads"] == [True] and len(seen[0]) == 1
