"""Issue 18 on the worker: duplicate jobs refused atomically, the gate's verdict in GET /models, and start-up
recovery that kills only this datastore's job children. In-process app without lifespan: the runner never
starts, so queued jobs stay queued."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from asfda.data.datastore import Datastore, LabelTag
from asfda.worker import jobstore
from asfda.worker.app import create_app
from asfda.worker.jobstore import JobStore
from asfda.worker.processes import is_job_child
from asfda.worker.recovery import recover
from asfda.worker.sample import make_sample_datastore, sample_affine
from asfda.worker.settings import WorkerSettings
from asfda.worker.tokens import datastore_token_path, read_token_file
from fastapi.testclient import TestClient


@pytest.fixture
def worker(tmp_path):
    root = tmp_path / "store"
    truth = make_sample_datastore(root, n_cases=2, size=8)
    Datastore(root).save_label("case00", LabelTag.FINAL, truth["case00"], sample_affine(), [0, 1], author="test")
    app = create_app(WorkerSettings(datastore=root, port=80))
    token = read_token_file(datastore_token_path(root))
    client = TestClient(app, base_url="http://localhost", headers={"Authorization": f"Bearer {token}"})
    return client, app


@pytest.mark.parametrize("kind", ["adapt", "rank"])
def test_two_concurrent_posts_queue_exactly_one_job(worker, monkeypatch, kind):
    client, app = worker
    # Both requests meet here, inside the insert, before either commits: without one transaction around
    # the duplicate check and the insert, both have passed the check by then and both are queued.
    meeting = threading.Barrier(2, timeout=1.0)
    real_now = jobstore.utc_now

    def meet_then_now():
        try:
            meeting.wait()
        except threading.BrokenBarrierError:  # the other request waits for our transaction: expected
            pass
        return real_now()

    monkeypatch.setattr(jobstore, "utc_now", meet_then_now)
    body = {"steps": 1} if kind == "adapt" else {"budget_k": 1}
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: client.post(f"/{kind}", json=body), range(2)))
    assert sorted(r.status_code for r in replies) == [202, 409], [r.text for r in replies]
    refused = next(r for r in replies if r.status_code == 409).json()["detail"]
    queued = next(r for r in replies if r.status_code == 202).json()["job_id"]
    assert refused == f"a {kind} job is already queued (job {queued})"
    assert [j["job_id"] for j in app.state.worker.jobs.unfinished(kind)] == [queued]


def test_models_list_carries_the_gate_verdict(worker):
    client, app = worker
    models = app.state.worker.store.models
    gate = {
        "activate": True,
        "reason": "3-fold held-out Dice 0.4000 is below the parent's 0.5000; advisory only",
        "method": "k-fold",
        "candidate_dice": 0.4,
        "parent_dice": 0.5,
        "held_out": ["case00"],
        "folds": 3,
        "advisory": True,
        "binding": False,
        "verdict": "worse",
    }
    loaded = models.load()
    models.publish(loaded.network, loaded.config, parent="v0001", note="asfda adapt", gate=gate)
    listed = {m["version"]: m for m in client.get("/models").json()}
    assert listed["v0001"]["gate"] is None and listed["v0001"]["gate_summary"] == ""
    assert listed["v0002"]["gate_summary"] == "worse, advisory" and listed["v0002"]["active"]
    assert listed["v0002"]["gate"]["verdict"] == "worse" and listed["v0002"]["gate"]["parent_dice"] == 0.5
    assert listed["v0002"]["gate"]["binding"] is False and listed["v0002"]["not_activated"] == ""
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"verdict", "binding", "advisory"} <= set(schema["GateVerdict"]["properties"])


def test_models_list_says_which_versions_trust_bundle_code(worker):
    client, app = worker
    models = app.state.worker.store.models
    loaded = models.load()
    loaded.config.bundle_code_trusted = True  # as `asfda model import --trust-bundle-code` records it
    models.publish(loaded.network, loaded.config, parent="v0001", note="asfda adapt")
    assert models.meta("v0002").bundle_code_trusted  # meta.json is what GET /models reads
    listed = {m["version"]: m for m in client.get("/models").json()}
    assert listed["v0001"]["bundle_code_trusted"] is False
    assert listed["v0002"]["bundle_code_trusted"] is True
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "bundle_code_trusted" in schema["ModelInfo"]["properties"]


def _fake_job_child(datastore) -> subprocess.Popen:
    """A sleeping process whose command line looks like a job child of `datastore`."""
    script = "import time; time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", script, "asfda.worker.job", "--datastore", str(datastore)])


def _started(pid: int) -> bool:
    try:  # the command line shows once the interpreter has started
        return "--datastore" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def test_recovery_kills_only_this_datastores_job_children(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    make_sample_datastore(mine, n_cases=1, size=8)
    other.mkdir()
    store, jobs = Datastore(mine), JobStore(mine / "asfda.db")
    # Two jobs a killed worker left "running": one pid is our orphan, the other was since reused by a
    # job child of another datastore.
    ours, theirs = _fake_job_child(mine), _fake_job_child(other)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_started(p.pid) for p in (ours, theirs)):
            time.sleep(0.05)
        assert is_job_child(ours.pid, mine) and is_job_child(theirs.pid, other)
        assert not is_job_child(theirs.pid, mine)
        for pid in (ours.pid, theirs.pid):
            job_id = jobs.submit("rank", {})["job_id"]
            assert jobs.claim(job_id)
            jobs.set_pid(job_id, pid)
        assert len(recover(store, jobs)) == 2
        assert ours.wait(timeout=10) is not None
        assert theirs.poll() is None and psutil.Process(theirs.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        for process in (ours, theirs):
            process.kill()
            process.wait()
