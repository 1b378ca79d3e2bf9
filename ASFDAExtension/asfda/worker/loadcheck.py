"""Load check: API throughput and latency while a training job runs.

`python -m asfda.worker.loadcheck --datastore DIR` starts a worker on a free loopback port (on a sample
datastore made in DIR when DIR has no model yet), measures GET /info and GET /worklist from a bounded
client loop first while idle, then while an adaptation job trains, and prints requests/second and
latency percentiles per endpoint. The training job is cancelled at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import httpx
import numpy as np

from asfda.worker.tokens import datastore_token_path, read_token_file

ENDPOINTS = ("/info", "/worklist")
SAMPLE_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, deadline_s: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def measure(
    url: str, clients: int, seconds: float, max_requests: int, headers: Optional[Dict[str, str]] = None
) -> Dict[str, List[float]]:
    """Each client thread alternates the endpoints until the time or the request budget runs out."""
    latencies: Dict[str, List[float]] = {e: [] for e in ENDPOINTS}
    failures: List[str] = []
    budget = threading.Semaphore(max_requests)
    deadline = time.monotonic() + seconds

    def loop(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
            index = offset
            while time.monotonic() < deadline and budget.acquire(blocking=False):
                endpoint = ENDPOINTS[index % len(ENDPOINTS)]
                started = time.perf_counter()
                reply = client.get(endpoint)
                elapsed = time.perf_counter() - started
                if reply.status_code != 200:
                    failures.append(f"{endpoint}: HTTP {reply.status_code}")
                latencies[endpoint].append(elapsed)
                index += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies["_elapsed"] = [time.monotonic() - started]
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, first: {failures[0]}")
    return latencies


def summarise(name: str, latencies: Dict[str, List[float]]) -> List[str]:
    elapsed = latencies["_elapsed"][0]
    rows = []
    for endpoint in ENDPOINTS:
        values = np.array(latencies[endpoint]) * 1000
        rows.append(
            f"{name:<9} {endpoint:<10} {len(values):>7} {len(values) / elapsed:>8.1f} "
            f"{np.percentile(values, 50):>8.1f} {np.percentile(values, 95):>8.1f} {values.max():>8.1f}"
        )
    return rows


def _prepare(datastore: Path) -> Optional[Dict[str, Path]]:
    """Make a sample datastore when `datastore` has no model; returns label files to upload (or None)."""
    from asfda.models.store import ModelStore
    from asfda.worker.sample import make_sample_datastore, write_labels

    if (datastore / "models").exists() and ModelStore(datastore / "models").active_version():
        return None
    truth = make_sample_datastore(datastore, n_cases=8, size=32, network_args=SAMPLE_UNET)
    return write_labels(truth, datastore.parent / f"{datastore.name}-labels", ["case00", "case01"])


def run(datastore: Path, clients: int, seconds: float, max_requests: int, device: str) -> Tuple[List[str], dict]:
    datastore = datastore.resolve()
    labels = _prepare(datastore)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(datastore.parent / f"loadcheck-worker-{port}.log", "ab")
    command = [sys.executable, "-m", "asfda", "serve", "--datastore", str(datastore), "--port", str(port)]
    worker = subprocess.Popen(command + ["--device", device], stdout=log, stderr=log, start_new_session=True)
    try:
        client = httpx.Client(base_url=url, timeout=120)
        _wait(lambda: _healthy(client), 180, "the worker to start")
        auth = {"Authorization": f"Bearer {read_token_file(datastore_token_path(datastore))}"}
        client.headers.update(auth)
        for case_id, path in (labels or {}).items():
            with open(path, "rb") as handle:
                client.put(f"/cases/{case_id}/label", files={"file": (path.name, handle)}).raise_for_status()
        rank = client.post("/rank", json={"budget_k": 2}).json()
        _wait(lambda: client.get(f"/jobs/{rank['job_id']}").json()["state"] == "succeeded", 600, "ranking")
        rows = summarise("idle", measure(url, clients, seconds, max_requests, auth))
        job = client.post("/adapt", json={"steps": 1_000_000}).json()
        _wait(lambda: client.get(f"/jobs/{job['job_id']}").json()["progress"]["phase"] == "train", 600, "training")
        before = client.get(f"/jobs/{job['job_id']}").json()["progress"]
        during = measure(url, clients, seconds, max_requests, auth)
        after = client.get(f"/jobs/{job['job_id']}").json()["progress"]
        rows += summarise("training", during)
        client.post(f"/jobs/{job['job_id']}/cancel").raise_for_status()
        training = {"steps_during_measurement": after["step"] - before["step"], "seconds": during["_elapsed"][0]}
        return rows, training
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asfda.worker.loadcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--datastore", type=Path, required=True, help="datastore (a sample one is made if empty)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads [4]")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement time per phase [15]")
    parser.add_argument("--max-requests", type=int, default=20000, help="request budget per phase [20000]")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows, training = run(args.datastore, args.clients, args.seconds, args.max_requests, args.device)
    print(f"{'phase':<9} {'endpoint':<10} {'requests':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    print("\n".join(rows))
    print(
        f"training kept going: {training['steps_during_measurement']} steps in {training['seconds']:.1f} s "
        f"({os.cpu_count()} CPU cores, {args.clients} clients, device {args.device})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
