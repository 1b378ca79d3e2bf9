"""A running advisory-verdict job makes way for any job a person queues (issue 18, "the model first"): the
runner kills and requeues it, the interactive job runs at once, and the verdict still lands afterwards.

The job children are stand-ins (a verdict that would take a minute on its first attempt, every other job
done at once) run by the real JobRunner and JobStore: what is under test is the queue, not the verdict."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from asfda.models.store import ModelStore
from asfda.worker import runner as runner_module
from asfda.worker.jobstore import JobStore
from asfda.worker.runner import JobRunner

FAKE_CHILD = """
import sys, time, pathlib
from asfda.worker.jobstore import JobStore
root = pathlib.Path(sys.argv[1])
job_id = sys.argv[2] if len(sys.argv) > 2 else sys.stdin.readline().strip()  # a warm spare reads its job id
jobs = JobStore(root / "asfda.db")
job = jobs.get(job_id)
attempts = root / (job_id + ".attempts")
attempt = int(attempts.read_text()) + 1 if attempts.exists() else 1
attempts.write_text(str(attempt))
slow = job["params"].get("slow_first_attempt_s", 0)
if attempt == 1:
    time.sleep(slow)
jobs.report_result(job_id, {"kind": job["kind"], "attempt": attempt, "done_at": time.time()})
"""


def _wait(what, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def queue(tmp_path, monkeypatch):
    root = tmp_path / "store"
    root.mkdir()
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)

    def spawn(datastore, device, job_id=None):
        import subprocess

        command = [sys.executable, str(script), str(Path(datastore))] + ([job_id] if job_id else [])
        return subprocess.Popen(command, stdin=subprocess.PIPE)

    monkeypatch.setattr(runner_module, "spawn_child", spawn)
    jobs = JobStore(root / "asfda.db")
    runner = JobRunner(root, jobs, ModelStore(root / "models"), "cpu")
    runner.start()
    yield root, jobs, runner
    runner.stop()


def _attempts(root: Path, job_id: str) -> int:
    path = root / f"{job_id}.attempts"
    return int(path.read_text()) if path.exists() else 0


@pytest.mark.parametrize("kind", ["infer", "rank", "adapt"])
def test_a_running_verdict_is_requeued_for_an_interactive_job_and_lands_after(queue, kind):
    root, jobs, runner = queue
    verdict = runner.submit("verdict", {"version": "v0002", "slow_first_attempt_s": 60})["job_id"]
    _wait(lambda: _attempts(root, verdict) == 1)  # the verdict's child is computing
    asked = time.time()
    # An adapt's result needs a version to activate: this one fails in the runner after its child ran, which is
    # enough to show it ran first.
    urgent = runner.submit(kind, {})["job_id"]
    done = _wait(lambda: (j := jobs.get(urgent))["state"] in ("succeeded", "failed") and j)
    assert _attempts(root, urgent) == 1 and time.time() - asked < 15  # not after the verdict's minute
    finished = _wait(lambda: (j := jobs.get(verdict))["state"] == "succeeded" and j)
    assert finished["result"]["attempt"] == 2  # stopped once, then run again from the start, to the end
    assert _attempts(root, verdict) == 2 and done["finished"] <= finished["finished"]


def test_a_verdict_with_nothing_waiting_runs_to_its_end(queue):
    root, jobs, runner = queue
    verdict = runner.submit("verdict", {"version": "v0002", "slow_first_attempt_s": 1.0})["job_id"]
    finished = _wait(lambda: (j := jobs.get(verdict))["state"] == "succeeded" and j)
    assert finished["result"]["attempt"] == 1


def test_other_jobs_are_not_killed_for_higher_priority_work(queue):
    root, jobs, runner = queue
    rank = runner.submit("rank", {"slow_first_attempt_s": 2.0})["job_id"]  # a rank steps aside by itself
    _wait(lambda: _attempts(root, rank) == 1)
    infer = runner.submit("infer", {})["job_id"]
    finished = _wait(lambda: (j := jobs.get(rank))["state"] == "succeeded" and j)
    assert finished["result"]["attempt"] == 1
    assert _wait(lambda: jobs.get(infer)["state"] == "succeeded")
