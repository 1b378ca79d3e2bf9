"""The widget's jobs and rounds: one Cancel per job (issue 20: one Cancel cancelled both rank and adapt), and the
per-round effort sums from GET /report (issue 22), fetched when the model versions change and rebuilt only
when the reply changed. The unmodified ASFDA.py on the harness, with the scripted worker."""

import pytest
from ASFDALib.job_tracker import PENDING, JobTracker
from ASFDALib.round_report import RoundSums, roundsOf, roundsTable

slicer = pytest.importorskip("slicer")


def runningJob(jobId, kind):
    return {"job_id": jobId, "kind": kind, "state": "running", "progress": {"phase": "train", "step": 1, "total": 4},
            "result": None, "error": None}


def roundReply(version, parent, cases, slices, minutes, known=None):
    return {"version": version, "parent": parent, "created": "", "cases": cases, "annotated_slices": slices,
            "minutes": minutes, "minutes_known": cases if known is None else known, "cumulative_minutes": minutes,
            "labels": []}


def test_each_cancel_cancels_only_its_own_job(harness, worker):
    harness.enter()
    harness.connect(worker.url)
    ui, jobs = harness.ui, harness.widget.session.jobs
    worker.jobs[:0] = [runningJob("job-8", "rank"), runningJob("job-7", "adapt")]
    harness.widget.pokeAll(force=True)
    harness.tickUntil(lambda: jobs.running("rank") == "job-8" and jobs.running("adapt") == "job-7", message="jobs seen")
    harness.tick()
    assert ui.cancelRankButton.enabled and ui.cancelAdaptButton.enabled
    assert ui.cancelAdaptButton.click()
    harness.tickUntil(lambda: jobs.running("adapt") is None, message="adapt cancelled")
    cancels = [path for method, path in worker.requests if path.endswith("/cancel")]
    assert cancels == ["/jobs/job-7/cancel"] and jobs.running("rank") == "job-8"
    harness.tick()
    assert ui.cancelRankButton.enabled and not ui.cancelAdaptButton.enabled and ui.adaptButton.enabled
    assert ui.cancelRankButton.click()
    harness.tickUntil(lambda: jobs.running("rank") is None, message="rank cancelled")
    assert [path for method, path in worker.requests if path.endswith("/cancel")] == cancels + ["/jobs/job-8/cancel"]
    assert harness.slotErrors == []


def reportRequests(worker):
    return sum(1 for request in worker.requests if request == ("GET", "/report"))


def test_rounds_table_is_fetched_when_versions_change_and_rebuilt_only_when_it_changed(harness, worker, monkeypatch):
    from test_module_harness import pollOnce

    worker.report = {"baseline": "v0001", "rounds": [roundReply("v0002", "v0001", 2, 10, 4.0)]}
    worker.models.append("v0002")
    harness.enter()
    harness.connect(worker.url)
    label = harness.ui.roundsLabel
    harness.tickUntil(lambda: "v0002" in label.text, message="rounds shown")
    assert label.visible and "<td align='right'>10</td>" in label.text and "4.0" in label.text
    fetched, writes, setText = reportRequests(worker), [], label.setText
    monkeypatch.setattr(label, "setText", lambda text: (writes.append(text), setText(text)))
    for _ in range(3):
        pollOnce(harness, "models", "worklist", "jobs")
    assert reportRequests(worker) == fetched and writes == []  # nothing changed: not fetched, not redrawn
    # An adaptation publishes v0003: the models poll sees it and the report is fetched again.
    worker.report["rounds"].append(roundReply("v0003", "v0002", 2, 19, None, known=1))
    worker.models.append("v0003")
    pollOnce(harness, "models")
    harness.tickUntil(lambda: "v0003" in label.text, message="new round shown")
    assert reportRequests(worker) == fetched + 1 and len(writes) == 1
    assert "unknown (1 of 2 recorded)" in label.text and "4.0 + unknown" in label.text
    assert harness.slotErrors == []


def test_a_worker_without_a_report_shows_no_table_and_no_error(harness, worker):
    worker.report = None  # 404 Not Found: a worker from before the route
    harness.enter()
    harness.connect(worker.url)
    harness.tickUntil(lambda: reportRequests(worker) == 1 and harness.widget.pollers["report"].generation > 0,
                      message="report asked")
    harness.tick()
    assert not harness.ui.roundsLabel.visible
    assert harness.ui.workerStatusLabel.text.startswith("Connected to")


def test_a_failing_report_is_said_in_its_table_not_as_a_dead_worker(harness, worker):
    worker.failPaths.add("/report")
    harness.enter()
    harness.connect(worker.url)
    harness.tickUntil(lambda: "not available" in harness.ui.roundsLabel.text, message="report failure shown")
    assert "scripted failure" in harness.ui.roundsLabel.text
    assert harness.ui.workerStatusLabel.text.startswith("Connected to")


def test_job_tracker_follows_each_kind_apart():
    tracker = JobTracker()
    tracker.update([{"job_id": "old", "kind": "adapt", "state": "failed"}])  # history: not announced
    tracker.requested("rank")
    assert not tracker.canStart("rank") and tracker.running("rank") is None
    assert tracker.cancelRequest("rank", None) is None  # its id is not known yet: nothing to cancel
    update = tracker.update([{"job_id": "r0", "kind": "rank", "state": "succeeded"},
                             {"job_id": "old", "kind": "adapt", "state": "failed"}])
    assert tracker.jobIds["rank"] == PENDING  # an older rank's end does not free a request in flight
    assert [p.jobId for p in update.finished] == ["r0"]
    tracker.started({"job_id": "r1", "kind": "rank"})
    tracker.update([runningJob("r1", "rank"), runningJob("a1", "adapt")])
    cancelled = []
    client = type("Client", (), {"cancelJob": lambda self, jobId: cancelled.append(jobId)})()
    tracker.cancelRequest("adapt", client)()
    assert cancelled == ["a1"]
    update = tracker.update([{"job_id": "r1", "kind": "rank", "state": "cancelled"}, runningJob("a1", "adapt")])
    assert tracker.canStart("rank") and tracker.running("adapt") == "a1"
    assert [p.jobId for p in update.finished] == ["r1"]
    tracker.requested("adapt")
    tracker.requestFailed("adapt")
    assert tracker.jobIds["adapt"] is None


def test_rounds_table_text():
    assert roundsOf(None) is None and roundsOf({"rounds": []}) == []
    assert "no adaptation round yet" in roundsTable([])
    rounds = roundsOf({"rounds": [roundReply(f"v{i:04d}", None, 1, 3, 1.5) for i in range(2, 10)]})
    table = roundsTable(rounds, limit=3)
    assert table.count("<tr>") == 1 + 3 + 1 and "v0009" in table and "v0006" not in table
    assert "All 8" in table and "<b>24</b>" in table and "<b>12.0</b>" in table
    assert RoundSums("v<2>", 0, 0, None, 0).minutesText() == "unknown"
    assert "v&lt;2&gt;" in roundsTable([RoundSums("v<2>", 0, 0, None, 0)])


def test_a_version_seen_while_the_report_is_in_flight_is_fetched_after_it(harness, worker, monkeypatch):
    import threading

    from test_module_harness import pollOnce

    harness.enter()
    harness.connect(worker.url)
    session, release, calls = harness.widget.session, threading.Event(), []
    fetch = session.fetchReport

    def slowFetch(client):
        reply = fetch(client)  # the worker answered before the next version existed
        calls.append(1)
        release.wait(10)
        return reply

    monkeypatch.setattr(session, "fetchReport", slowFetch)
    worker.models.append("v0002")
    pollOnce(harness, "models")  # asks for the report: the fetch hangs, in flight
    harness.tickUntil(lambda: calls == [1], message="report in flight")
    worker.report["rounds"].append(roundReply("v0003", "v0002", 1, 5, 2.0))
    worker.models.append("v0003")
    pollOnce(harness, "models")  # a version appears while the old fetch runs: its reply may predate it
    release.set()
    harness.tickUntil(lambda: "v0003" in harness.ui.roundsLabel.text, message="the later report shown")
    assert len(calls) == 2


def test_module_file_keeps_the_widget_the_logic_and_the_test():
    """Issue 23: the logic's two mixins became one WorkerSession it owns; job tracking left the widget."""
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "ASFDAModule" / "ASFDA.py").read_text()
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    assert set(classes) == {"ASFDA", "ASFDAParameterNode", "ASFDAWidget", "ASFDALogic", "ASFDATest"}
    assert [ast.unparse(base) for base in classes["ASFDALogic"].bases] == ["ScriptedLoadableModuleLogic"]
    assert "WorkerSession(" in ast.unparse(classes["ASFDALogic"])
    widget = ast.unparse(classes["ASFDAWidget"])
    assert "JobId" not in widget and "PENDING" not in widget and "client.cancelJob" not in widget
