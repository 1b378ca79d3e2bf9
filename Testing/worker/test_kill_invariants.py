"""SIGKILL of a real worker at random moments of label submits and of an adapt's publish, then a restart:
nothing acknowledged is lost and nothing half-written is served.

No hook in the product code says where to die: the kill lands at a seeded random time while a thread submits
labels in a loop and an adapt job trains, publishes and activates. The whole session is killed (the worker and
its job child), as a power cut or the OOM killer would.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import httpx
import nibabel as nib
import numpy as np
from asfda.worker.sample import make_sample_datastore, sample_affine
from worker_helpers import WorkerProcess, wait_for

SEED = 18
ITERATIONS = 4  # half kill while only submits run, half around an adapt's publish (5 worker starts: ~80 s)
CASES = ["case00", "case01", "case02"]
VARIANTS = 4  # distinct label contents per case, so every revision can be told apart
_VERSION = re.compile(r"^v\d{4}$")


@dataclass
class Acknowledged:
    """What the worker answered 200 to: (case, revision) -> the variant submitted."""

    revisions: Dict[Tuple[str, str], int] = field(default_factory=dict)
    verified: Dict[Tuple[str, str], str] = field(default_factory=dict)  # -> sha256 of the file, once checked
    lock: threading.Lock = field(default_factory=threading.Lock)


def _label_files(truth: Dict[str, np.ndarray], folder: Path) -> Dict[Tuple[str, int], Path]:
    folder.mkdir()
    files = {}
    for case_id in CASES:
        for variant in range(VARIANTS):
            path = folder / f"{case_id}-{variant}.nii.gz"
            label = np.roll(truth[case_id], variant, axis=0).astype(np.uint8)
            nib.save(nib.Nifti1Image(label, sample_affine()), str(path))
            files[case_id, variant] = path
    return files


def _latest_revision(client: httpx.Client, case_id: str) -> Optional[str]:
    found = client.get(f"/cases/{case_id}/revisions").json()
    return found[-1]["revision"] if found else None


def _submit_forever(client: httpx.Client, files, acked: Acknowledged, rng: random.Random, stop: threading.Event):
    """Conditional submits (If-Match the revision last seen) until the worker stops answering."""
    known = {case_id: _latest_revision(client, case_id) for case_id in CASES}
    while not stop.is_set():
        case_id, variant = rng.choice(CASES), rng.randrange(VARIANTS)
        base = known[case_id]
        headers = {"If-Match": f'"{base}"'} if base else {"If-None-Match": "*"}
        try:
            with open(files[case_id, variant], "rb") as handle:
                reply = client.put(
                    f"/cases/{case_id}/label",
                    files={"file": (f"{case_id}.nii.gz", handle, "application/octet-stream")},
                    data={"author": "kill-test"},
                    headers=headers,
                )
            if reply.status_code == 200:
                revision = reply.json()["revision"]
                with acked.lock:
                    acked.revisions[case_id, revision] = variant
                known[case_id] = revision
            elif reply.status_code == 409:  # an earlier submit landed but its reply was lost to a kill
                known[case_id] = _latest_revision(client, case_id)
            else:
                assert reply.status_code == 503, reply.text  # busy: heavy slots full
        except httpx.TransportError:
            return  # killed
        time.sleep(rng.uniform(0.0, 0.03))  # a clinician's pace, compressed: leaves the CPU to the adapt


def _decoded(content: bytes, scratch: Path) -> np.ndarray:
    scratch.write_bytes(content)
    return np.asarray(nib.load(str(scratch)).dataobj)


def _complete_versions(models: Path) -> List[str]:
    """Version folders with readable metadata and weights: what GET /models may list."""
    found = []
    for folder in sorted(models.iterdir()):
        if _VERSION.match(folder.name) and (folder / "weights.pt").is_file():
            json.loads((folder / "meta.json").read_text())  # a half-written meta.json fails here
            found.append(folder.name)
    return found


def _check_invariants(worker: WorkerProcess, files, acked: Acknowledged, scratch: Path) -> None:
    client, datastore = worker.client, worker.datastore
    reply = client.get("/models")
    assert reply.status_code == 200, reply.text
    listed = [m["version"] for m in reply.json()]
    assert set(listed) <= set(_complete_versions(datastore / "models")), listed  # nothing half-written listed
    active = client.get("/info").json()["active_model_version"]
    assert active in listed and [m["version"] for m in reply.json() if m["active"]] == [active]
    for case_id in CASES:
        revisions = client.get(f"/cases/{case_id}/revisions").json()
        listed_sha = {r["revision"]: r["sha256"] for r in revisions}
        names = [r["revision"] for r in revisions]
        for (acked_case, revision), variant in acked.revisions.items():
            if acked_case != case_id:
                continue
            assert revision in listed_sha, f"acknowledged {case_id} {revision} lost: {names}"
            if (case_id, revision) in acked.verified:  # its file was checked after an earlier kill: unchanged?
                assert listed_sha[revision] == acked.verified[case_id, revision]
                continue
            got = client.get(f"/cases/{case_id}/revisions/{revision}")
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == listed_sha[revision]
            expected = np.asarray(nib.load(str(files[case_id, variant])).dataobj)
            np.testing.assert_array_equal(_decoded(got.content, scratch), expected)
            acked.verified[case_id, revision] = listed_sha[revision]
        if not revisions:
            continue
        assert [r["current"] for r in revisions] == [False] * (len(revisions) - 1) + [True]
        latest = client.get(f"/cases/{case_id}/revisions/{names[-1]}").content
        current = (datastore / "labels" / "final" / f"{case_id}.nii.gz").read_bytes()
        assert hashlib.sha256(current).hexdigest() == hashlib.sha256(latest).hexdigest() == revisions[-1]["sha256"]


def _kill_session(worker: WorkerProcess) -> None:
    os.killpg(worker.process.pid, signal.SIGKILL)  # the worker and its job child at once
    worker.process.wait(timeout=30)


def _training(client: httpx.Client, job_id: str) -> bool:
    job = client.get(f"/jobs/{job_id}").json()
    return job["state"] != "queued" and (job["state"] != "running" or job["progress"]["phase"] == "train")


def _publishing(models: Path, versions_before: int) -> bool:
    return any(models.glob(".staging-*")) or len(_complete_versions(models)) > versions_before


def _wait_publish(client: httpx.Client, job_id: str, models: Path, versions_before: int) -> None:
    """Poll the folder often (a publish takes a fraction of a second), the job now and then (it may fail)."""
    deadline = time.monotonic() + 60
    while not _publishing(models, versions_before):
        if client.get(f"/jobs/{job_id}").json()["state"] in ("succeeded", "failed", "cancelled"):
            return
        assert time.monotonic() < deadline, "timed out waiting for the publish"
        for _ in range(50):
            if _publishing(models, versions_before):
                return
            time.sleep(0.005)


def _one_life(worker: WorkerProcess, kill_point: str, files, acked: Acknowledged, rng: random.Random) -> bool:
    """Submit in a loop (and, for a publish kill, adapt); SIGKILL the session at a seeded random moment.
    True when the kill left a half-written version folder behind (it landed inside the publish)."""
    stop, errors = threading.Event(), []

    def submitter():
        try:
            _submit_forever(worker.client, files, acked, random.Random(rng.random()), stop)
        except BaseException as exc:  # surfaced below: an assertion in a thread would only warn
            errors.append(exc)

    thread = threading.Thread(target=submitter)
    thread.start()
    try:
        if kill_point == "publish":
            wait_for(lambda: acked.revisions, 30, "an acknowledged label to adapt from")
            models = worker.datastore / "models"
            versions = len(_complete_versions(models))
            job = worker.client.post("/adapt", json={"steps": 2})
            assert job.status_code == 202, job.text
            job_id = job.json()["job_id"]
            wait_for(lambda: _training(worker.client, job_id), 60, "the adapt to train")
            # Seen from outside, as an operator would: the staging folder (or the version it became) appears.
            _wait_publish(worker.client, job_id, models, versions)
            time.sleep(rng.uniform(0.0, 0.08))  # inside the publish (~50 ms here), just after its rename, or later
        else:
            time.sleep(rng.uniform(0.1, 1.5))
    finally:
        _kill_session(worker)
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    return any((worker.datastore / "models").glob(".staging-*"))


def test_sigkill_during_submits_and_publishes_loses_nothing(tmp_path):
    datastore = tmp_path / "store"
    files = _label_files(make_sample_datastore(datastore), tmp_path / "labels")
    rng, acked, scratch = random.Random(SEED), Acknowledged(), tmp_path / "scratch.nii.gz"
    kill_points = ["submit", "publish"] * (ITERATIONS // 2)
    rng.shuffle(kill_points)
    published, mid_publish = 0, 0
    for kill_point in kill_points:
        worker = WorkerProcess(datastore).wait_healthy()
        try:
            _check_invariants(worker, files, acked, scratch)
            mid_publish += _one_life(worker, kill_point, files, acked, rng)
            published = max(published, len(_complete_versions(datastore / "models")))
        finally:
            worker.stop()
    final = WorkerProcess(datastore).wait_healthy()
    try:
        _check_invariants(final, files, acked, scratch)
    finally:
        final.stop()
    assert len(acked.revisions) >= ITERATIONS  # the loop really submitted (and was acknowledged) throughout
    print(f"{len(acked.revisions)} acknowledged revisions, {published} versions, {mid_publish} kills mid-publish")
