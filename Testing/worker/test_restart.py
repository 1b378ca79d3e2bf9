"""Nothing is lost: SIGKILL of the worker mid-training, then a restart; and the refused non-loopback start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import nibabel as nib
import numpy as np
import psutil
from worker_helpers import WorkerProcess, free_port, upload, wait_for, wait_job, wait_training


def test_non_loopback_without_token_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ASFDA_TOKEN"}
    command = [sys.executable, "-m", "asfda", "serve", "--datastore", str(tmp_path), "--host", "0.0.0.0"]
    done = subprocess.run(command + ["--port", str(free_port())], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "token" in done.stderr
    assert not (tmp_path / "asfda.db").exists()  # refused before touching the datastore


def test_sigkill_mid_training_then_restart_loses_nothing(sample):
    worker = WorkerProcess(sample.datastore).wait_healthy()
    try:
        client = worker.client
        for case_id in ["case00", "case01"]:
            assert upload(client, case_id, sample.labels[case_id]).status_code == 200
        adapt = client.post("/adapt", json={"steps": 100000}).json()
        wait_training(client, adapt["job_id"])
        # A label acknowledged while training runs must survive too.
        assert upload(client, "case02", sample.labels["case02"]).status_code == 200
        with sqlite3.connect(sample.datastore / "asfda.db") as db:
            child = db.execute("SELECT pid FROM jobs WHERE job_id = ?", (adapt["job_id"],)).fetchone()[0]
        # Leftovers a dying worker could leave: a half-written upload and a half-published model version.
        (sample.datastore / ".uploads" / "interrupted.nii.gz").write_bytes(b"partial")
        (sample.datastore / "models" / ".staging-deadbeef").mkdir()

        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)
        # The orphaned child notices its parent is gone and stops training on its own.
        wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie", 30, "child exit")
    finally:
        worker.stop()

    restarted = WorkerProcess(sample.datastore).wait_healthy()
    try:
        client = restarted.client
        job = client.get(f"/jobs/{adapt['job_id']}").json()
        assert job["state"] == "failed" and "restarted" in job["error"]
        assert client.get("/info").json()["active_model_version"] == "v0001"
        assert [(m["version"], m["active"]) for m in client.get("/models").json()] == [("v0001", True)]
        statuses = {c["case_id"]: c["status"] for c in client.get("/cases").json()}
        for case_id in ["case00", "case01", "case02"]:
            assert statuses[case_id] == "final"
            stored = nib.load(str(sample.datastore / "labels" / "final" / f"{case_id}.nii.gz"))
            np.testing.assert_array_equal(np.asarray(stored.dataobj), sample.truth[case_id])
        assert not list((sample.datastore / ".uploads").iterdir())
        assert not list((sample.datastore / "models").glob(".staging-*"))
        # And it works again: a new adaptation runs to a new active version.
        job = wait_job(client, client.post("/adapt", json={"steps": 2}).json()["job_id"])
        assert job["state"] == "succeeded", job["error"]
        assert client.get("/info").json()["active_model_version"] == job["result"]["version"] == "v0002"
    finally:
        restarted.stop()
