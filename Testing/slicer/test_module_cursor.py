"""No wait cursor over a question (issue 20, "Minor"): the busy cursor said "wait" while Slicer waited for a click.

Each handler that may ask something (connect: the annotator's name; Next case: unsubmitted edits; Submit: nothing
painted) runs under ``slicer.util.tryWithErrorDisplay``; the harness records whether an override cursor was set
when each dialog opened.
"""

import pytest

slicer = pytest.importorskip("slicer")

from harness import pythonqt  # noqa: E402
from test_module_harness import loadFirstCase, paint  # noqa: E402


def test_no_question_is_asked_under_a_wait_cursor(harness, worker):
    harness.ui.annotatorLineEdit.text = ""
    segmentationNode = loadFirstCase(harness, worker)  # connect asks the annotator's name
    asked = [d for d in harness.dialogs if "Your name" in d["text"]]
    assert asked and not asked[0]["waitCursor"]

    paint(segmentationNode, "liver")
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert harness.ui.nextCaseButton.click()
    assert "not submitted" in harness.dialogs[-1]["text"] and not harness.dialogs[-1]["waitCursor"]

    for name in ("liver", "tumor"):
        paint(segmentationNode, name, value=False)
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert harness.ui.submitLabelButton.click()
    assert "Nothing is painted" in harness.dialogs[-1]["text"] and not harness.dialogs[-1]["waitCursor"]
    assert pythonqt.QApplication.overrideCursor() is None
