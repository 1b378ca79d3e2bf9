"""Several annotators on one worker, through the unmodified ASFDA.py widget (issue 12).

The scripted worker (harness/fake_worker.py) keeps leases as docs/worker.md describes and records the
annotator header of every request; "Dr. Bea" stands for a second clinician working on the same worker.
"""

import pytest

slicer = pytest.importorskip("slicer")

from harness import pythonqt  # noqa: E402


def rowOf(harness, caseId):
    table = harness.ui.worklistTable
    return next(r for r in range(table.rowCount()) if table.item(r, 1).text() == caseId)


def heldByCell(harness, caseId):
    return harness.ui.worklistTable.item(rowOf(harness, caseId), harness.module.HELD_BY_COLUMN)


def openRow(harness, caseId):
    harness.ui.worklistTable.cellDoubleClicked.emit(rowOf(harness, caseId), 0)


def currentCase(harness):
    return harness.widget._parameterNode.currentCaseId


def settle(harness):
    """Let every request in flight finish and its continuation run."""
    assert harness.widget.tasks.waitUntilFinished(10)
    for poll in harness.widget.pollers.values():
        poll.wait(10)
    harness.tick()
    assert harness.widget.tasks.waitUntilFinished(10)
    harness.tick()


def nameQuestions(harness):
    return [d for d in harness.dialogs if d["title"] == "ASFDA annotator"]


def test_name_is_asked_once_and_sent_on_every_request(harness, worker):
    harness.enter()
    ui = harness.ui
    ui.workerUrlLineEdit.text = worker.url
    assert ui.connectButton.click()  # the question is cancelled: no connection, and it says why
    assert len(nameQuestions(harness)) == 1 and harness.widget.session.client is None
    assert "Enter your name" in ui.workerStatusLabel.text and worker.requests == []

    harness.connect(worker.url, annotator="  Dr.   Ada ")
    assert len(nameQuestions(harness)) == 2
    assert ui.annotatorLineEdit.text == "Dr. Ada" and pythonqt.SETTINGS["ASFDA/annotator"] == "Dr. Ada"
    assert "as Dr. Ada" in ui.workerStatusLabel.text
    assert ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-a", message="case loaded")
    harness.exit()
    harness.enter()
    harness.connect(worker.url)  # connecting again uses the stored name
    assert len(nameQuestions(harness)) == 2
    settle(harness)
    paths = {path.split("?")[0] for _, path, _ in worker.annotatorHeaders}
    assert {"/info", "/worklist", "/cases", "/jobs", "/next", "/cases/case-a/image", "/cases/case-a/infer"} <= paths
    assert {name for *_, name in worker.annotatorHeaders} == {"Dr. Ada"}
    assert harness.slotErrors == []


def test_held_by_column_shows_who_holds_each_case(harness, worker):
    worker.leases["case-b"] = "Dr. Bea"
    harness.enter()
    harness.connect(worker.url)
    assert harness.ui.worklistTable.columnCount() == len(harness.module.COLUMNS)
    assert heldByCell(harness, "case-b").text() == "Dr. Bea"
    assert "2030-01-01" in heldByCell(harness, "case-b").toolTip()
    assert heldByCell(harness, "case-a").text() == "" and heldByCell(harness, "case-a").toolTip() == ""


def test_a_case_held_by_someone_else_is_not_opened(harness, worker):
    worker.leases["case-a"] = "Dr. Bea"
    harness.enter()
    harness.connect(worker.url)
    worker.leases["case-b"] = "Dr. Bea"  # taken after the last poll: the worker, not the cache, decides
    openRow(harness, "case-b")
    settle(harness)
    assert "case-b is held by Dr. Bea" in harness.ui.caseStatusLabel.text
    assert currentCase(harness) == "" and not harness.ui.submitLabelButton.enabled
    assert not [p for _, p in worker.requests if p.startswith("/cases/case-b/") and not p.endswith("/lease")]
    assert worker.leases == {"case-a": "Dr. Bea", "case-b": "Dr. Bea"}
    assert [d for d in harness.dialogs if d["title"] != "ASFDA annotator"] == []  # the status says it
    assert harness.slotErrors == []


def test_next_case_opens_the_case_the_worker_leased(harness, worker):
    worker.cases = ["case-a", "case-b", "case-c"]
    worker.leases["case-a"] = "Dr. Bea"
    harness.enter()
    harness.connect(worker.url)
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-b", message="next case")
    assert worker.leases["case-b"] == "Dr. Ada" and ("POST", "/next") in worker.requests
    assert harness.ui.submitLabelButton.enabled
    # The worker hands back the case Ada holds; "Next" moves on to the next free one and returns case-b.
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-c", message="the case after")
    settle(harness)
    assert worker.leases == {"case-a": "Dr. Bea", "case-c": "Dr. Ada"}
    assert harness.ui.nextCaseButton.click()  # case-a is Bea's, case-b was skipped: only case-b is free
    harness.tickUntil(lambda: currentCase(harness) == "case-b", message="the skipped case")
    settle(harness)
    assert heldByCell(harness, "case-b").text() == "Dr. Ada"
    assert harness.slotErrors == []


def test_leaving_a_case_releases_it_and_submitting_ends_it(harness, worker):
    harness.enter()
    harness.connect(worker.url)
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-a", message="case-a")
    openRow(harness, "case-b")
    harness.tickUntil(lambda: currentCase(harness) == "case-b", message="case-b")
    settle(harness)
    assert ("DELETE", "/cases/case-a/lease") in worker.requests
    assert worker.leases == {"case-b": "Dr. Ada"}

    assert harness.ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-b" in worker.labels, message="label upload")
    settle(harness)
    assert worker.leases == {} and harness.widget.session.lease.caseId is None

    openRow(harness, "case-a")
    harness.tickUntil(lambda: currentCase(harness) == "case-a", message="case-a again")
    settle(harness)
    assert worker.leases == {"case-a": "Dr. Ada"}
    slicer.mrmlScene.Clear(False)  # closing the scene leaves the case
    settle(harness)
    assert worker.leases == {}
    assert [r for r in worker.requests if r[0] == "DELETE"] == [("DELETE", "/cases/case-a/lease")] * 2
    assert harness.slotErrors == []


def test_a_worker_without_leases_works_as_before(harness, worker):
    worker.leasesSupported = False
    harness.enter()
    harness.connect(worker.url)
    assert heldByCell(harness, "case-a").text() == ""
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-a", message="case from the local worklist")
    openRow(harness, "case-b")
    harness.tickUntil(lambda: currentCase(harness) == "case-b", message="case-b")
    settle(harness)
    # One probe of /next, then no lease call at all.
    leaseCalls = [r for r in worker.requests if r[1] == "/next" or r[1].endswith("/lease")]
    assert leaseCalls == [("POST", "/next")]
    assert harness.slotErrors == []


def test_a_lost_lease_is_said_and_a_remote_worker_needs_a_token(harness, worker):
    harness.enter()
    harness.connect(worker.url)
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: currentCase(harness) == "case-a", message="case-a")
    settle(harness)  # the case is fully open (its own status line shown) before the lease is lost
    worker.leases["case-a"] = "Dr. Bea"  # Ada's lease expired (a laptop asleep) and Bea took the case
    harness.widget.pollers["lease"].poke(force=True)
    settle(harness)
    assert "Dr. Bea holds it now" in harness.ui.caseStatusLabel.text

    requestsBefore = len(worker.requests)
    harness.ui.workerUrlLineEdit.text = "http://10.1.2.3:8765"
    assert harness.ui.connectButton.click()
    assert "your own annotator token" in harness.dialogs[-1]["text"]
    assert len(worker.requests) == requestsBefore and harness.widget.tasks.pending == 0
    # Slicer's tryWithErrorDisplay shows the error, then re-raises it to PythonQt, which prints it.
    assert [type(error).__name__ for *_, error in harness.slotErrors] == ["ValueError"]
