"""A real worker (`python -m asfda serve`) on a free loopback port over a tiny synthetic datastore."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import httpx
import pytest
from asfda.worker.sample import make_sample_datastore, write_labels
from asfda.worker.tokens import datastore_token_path, read_token_file

START_DEADLINE_S = 120.0
TOKEN = "s3cret-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable, deadline_s: float, what: str, interval: float = 0.1):
    """Poll until `condition()` returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


class WorkerProcess:
    """One `asfda serve` process; its own session so teardown can end everything it started."""

    def __init__(self, datastore: Path, args: Optional[List[str]] = None, token: Optional[str] = None):
        self.datastore, self.token = datastore, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = datastore.parent / f"worker-{self.port}.log"
        command = [sys.executable, "-m", "asfda", "serve", "--datastore", str(datastore), "--port", str(self.port)]
        command += ["--device", "cpu", *(args or [])]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("ASFDA_TOKEN", "ASFDA_WORKER_TOKEN", "ASFDA_WORKER_TOKEN_FILE"):
            env.pop(name, None)
        if token:
            env["ASFDA_WORKER_TOKEN"] = token
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=120, headers=self.auth(token))

    @staticmethod
    def auth(token: Optional[str]) -> Dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def wait_healthy(self) -> WorkerProcess:
        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, START_DEADLINE_S, "the worker to answer /health", interval=0.2)
        if not self.token:  # as a client on this machine does: the datastore's own token
            self.token = read_token_file(datastore_token_path(self.datastore))
            self.client.headers.update(self.auth(self.token))
        return self

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        try:  # anything of this session still alive (e.g. a job child of a killed worker)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Sample:
    def __init__(self, root: Path):
        self.root = root
        self.datastore = root / "store"
        self.truth = make_sample_datastore(self.datastore)
        self.labels = write_labels(self.truth, root / "uploads", sorted(self.truth))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Sample:
    return Sample(tmp_path_factory.mktemp("worker"))


def upload(client: httpx.Client, case_id: str, path: Path, author: str = "pytest", name: Optional[str] = None):
    """PUT a label; a 503 (the worker's bound on concurrent uploads, nothing stored) is retried after its
    Retry-After, as the documented contract asks of a client."""
    for _attempt in range(5):
        with open(path, "rb") as handle:
            files = {"file": (name or path.name, handle, "application/octet-stream")}
            reply = client.put(f"/cases/{case_id}/label", files=files, data={"author": author})
        if reply.status_code != 503:
            return reply
        time.sleep(float(reply.headers.get("Retry-After", "1")))
    return reply


def wait_job(client: httpx.Client, job_id: str, states=("succeeded", "failed", "cancelled"), deadline_s=120.0):
    def done():
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["state"] in states else None

    return wait_for(done, deadline_s, f"job {job_id} to reach {states}")


def wait_training(client: httpx.Client, job_id: str, deadline_s=120.0):
    """Wait until an adapt job reports training steps (its child is deep inside the fine-tuning loop)."""

    def training():
        job = client.get(f"/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        return job if job["progress"]["phase"] == "train" and job["progress"]["step"] else None

    return wait_for(training, deadline_s, f"job {job_id} to train")
