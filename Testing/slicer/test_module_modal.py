"""Background continuations against modal dialogs and scene closes (issue 20, "Misbehaves").

The harness's modal dialogs run a nested event loop (harness/pythonqt.py, ``runModal``), as Qt's do: the
module's timer fires under a question, so whatever a background call delivers at that moment would run
while the person is still reading it. Each test runs on the stand-ins and on each cached release's files.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import ModuleHarness, pythonqt, slicer_release  # noqa: E402
from test_module_harness import loadFirstCase  # noqa: E402


@pytest.fixture(params=[None, *slicer_release.TAGS], ids=["stand-ins", *slicer_release.TAGS])
def harness(request, mrmlScene, tmp_path):
    """The conftest's harness, and the same on each release's own framework files (test_module_releases)."""
    tag = request.param
    if tag is not None and slicer_release.releaseFolder(tag) is None:
        pytest.skip(slicer_release.skipReason(tag))
    h = ModuleHarness(slicer, tmp_path / "scenes", release=tag)
    yield h
    h.close()


def eraseAll(segmentationNode, volumeNode):
    segmentation = segmentationNode.GetSegmentation()
    empty = np.zeros(slicer.util.arrayFromVolume(volumeNode).shape, dtype=np.uint8)
    for i in range(segmentation.GetNumberOfSegments()):
        slicer.util.updateSegmentBinaryLabelmapFromArray(empty, segmentationNode, segmentation.GetNthSegmentID(i),
                                                         volumeNode)


def test_the_nested_loop_runs_timers_under_a_dialog(harness):
    """The stand-in itself: a timer due while a question is open fires before the answer returns."""
    fired = []
    timer = pythonqt.QTimer()
    timer.timeout.connect(lambda: fired.append(pythonqt.QApplication.activeModalWidget()))
    timer.start(10)
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert not slicer.util.confirmOkCancelDisplay("Continue?")
    assert fired and all(isinstance(w, pythonqt.ctkMessageBox) for w in fired)
    assert pythonqt.QApplication.activeModalWidget() is None
    timer.stop()


def test_a_case_asked_for_earlier_waits_until_the_question_is_answered(harness, worker):
    """'A case asked for earlier opens under a confirm dialog': Next case was pressed, its download finished,
    then the clinician pressed Submit on an emptied case-a. Opened under the "Nothing is painted in case-a"
    question, case-b replaced case-a, and the OK then submitted case-b, never seen, as having no structure."""
    segmentationNode = loadFirstCase(harness, worker)
    widget, parameters = harness.widget, harness.widget._parameterNode
    volumeNode = parameters.currentVolume
    assert harness.ui.nextCaseButton.click()  # case-a is unedited: no question
    assert widget.tasks.waitUntilFinished(10)  # case-b is downloaded; its continuation waits for a tick
    eraseAll(segmentationNode, volumeNode)
    shownUnderTheQuestion = []
    pythonqt.WHILE_MODAL.append(lambda dialog: shownUnderTheQuestion.append(parameters.currentCaseId))
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Ok)
    assert harness.ui.submitLabelButton.click()
    assert "Nothing is painted in case case-a" in harness.dialogs[-1]["text"]
    assert shownUnderTheQuestion == ["case-a"]
    harness.tickUntil(lambda: "case-a" in worker.labels, message="the empty label of case-a")
    assert worker.noStructure == {"case-a"} and "case-b" not in worker.labels
    harness.tickUntil(lambda: parameters.currentCaseId == "case-b", message="case-b opens after the answer")
    assert harness.slotErrors == []


def test_a_case_that_finishes_opening_after_a_scene_close_while_hidden_is_given_back(harness, worker):
    """'A case that finishes opening after a scene close, while the module is hidden, keeps its lease for
    30 min and cannot be submitted': the request belonged to the closed scene, so its lease goes back and
    nothing is loaded into the new one."""
    harness.enter()
    harness.connect(worker.url)
    widget = harness.widget
    assert harness.ui.nextCaseButton.click()
    assert widget.tasks.waitUntilFinished(10)  # leased and downloaded; not yet delivered
    assert worker.leases == {"case-a": "Dr. Ada"}
    harness.exit()  # the clinician switched module...
    slicer.mrmlScene.Clear(False)  # ...and closed the scene
    harness.tickUntil(lambda: not widget.tasks.pending and "case-a" not in worker.leases, message="lease back")
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert widget.session.lease.caseId is None
    harness.enter()
    assert widget._parameterNode.currentCaseId == ""
    assert harness.slotErrors == []
    # The clinician can open (and hold) the case again at once.
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: widget._parameterNode.currentCaseId == "case-a", message="case opened again")
    assert worker.leases == {"case-a": "Dr. Ada"}
