"""The clinician's loop over real HTTP: rank -> labels -> adapt -> new version -> stale scores; rollback; cancel."""

from __future__ import annotations

import gzip
import sqlite3
import threading

import nibabel as nib
import numpy as np
import psutil
import pytest
from asfda.worker.sample import sample_affine
from worker_helpers import WorkerProcess, upload, wait_for, wait_job, wait_training


@pytest.fixture(scope="module")
def worker(sample):
    process = WorkerProcess(sample.datastore).wait_healthy()
    yield process
    process.stop()


def test_full_loop(worker, sample):
    client = worker.client
    info = client.get("/info").json()
    assert info["active_model_version"] == "v0001" and info["labels"] == {"background": 0, "blob": 1}
    assert info["device"] == "cpu" and info["gpu_memory_free_mb"] is None

    job = client.post("/rank", json={"strategy": "asfda", "budget_k": 2})
    assert job.status_code == 202 and job.json()["kind"] == "rank"
    ranked = wait_job(client, job.json()["job_id"])
    assert ranked["state"] == "succeeded", ranked["error"]
    assert ranked["progress"]["phase"] == "score" and ranked["progress"]["step"] == ranked["progress"]["total"]

    worklist = client.get("/worklist").json()
    assert worklist["strategy"] == "asfda" and worklist["budget_k"] == 2
    assert [i["rank"] for i in worklist["items"]] == list(range(1, 7))
    picks = [i["case_id"] for i in worklist["items"] if i["selected"]]
    assert len(picks) == 2 and not any(i["stale"] for i in worklist["items"])
    assert all(i["model_version"] == "v0001" for i in worklist["items"])
    assert sum(i["selected"] for i in client.get("/worklist", params={"k": 3}).json()["items"]) == 3

    for case_id in picks:
        reply = upload(client, case_id, sample.labels[case_id], author="dr-a")
        assert reply.status_code == 200, reply.text
        assert reply.json()["label_values"] == [1] and reply.json()["author"] == "dr-a"
        assert reply.json()["model_version"] == "v0001" and reply.json()["tag"] == "final"
    statuses = {c["case_id"]: c["status"] for c in client.get("/cases").json()}
    assert {c for c, s in statuses.items() if s == "final"} == set(picks)

    job = client.post("/adapt", json={"steps": 3, "use_pseudo_labels": True})
    assert job.status_code == 202
    adapted = wait_job(client, job.json()["job_id"])
    assert adapted["state"] == "succeeded", adapted["error"]
    assert adapted["result"]["version"] == "v0002" and adapted["result"]["activated"] is True
    assert client.get("/info").json()["active_model_version"] == "v0002"
    # The model first: v0002 is active while its advisory verdict (2 labels) is still to come, in a job of
    # its own at the lowest priority; it is attached to the version when it arrives.
    assert adapted["result"]["gate"]["pending"] is True
    assert next(m for m in client.get("/models").json() if m["version"] == "v0002")["gate_summary"] in (
        "pending, advisory",
        "worse, advisory",
        "not worse, advisory",
    )
    verdict = wait_job(client, adapted["result"]["verdict_job_id"])
    assert verdict["state"] == "succeeded" and verdict["kind"] == "verdict", verdict["error"]
    gate = next(m for m in client.get("/models").json() if m["version"] == "v0002")["gate"]
    assert gate["verdict"] in ("worse", "not worse") and not gate["pending"] and gate["folds"] == 2
    assert client.get("/info").json()["active_model_version"] == "v0002"  # an advisory verdict changes nothing
    models = client.get("/models").json()
    assert [(m["version"], m["active"], m["parent"]) for m in models] == [
        ("v0001", False, None),
        ("v0002", True, "v0001"),
    ]

    worklist = client.get("/worklist").json()
    assert worklist["active_model_version"] == "v0002" and all(i["stale"] for i in worklist["items"])
    labelled = {i["case_id"]: i["status"] for i in worklist["items"] if i["case_id"] in picks}
    assert set(labelled.values()) == {"final"}
    assert all(c["stale"] for c in client.get("/cases").json() if c["scored_at"])


def test_infer_returns_the_active_models_labelmap(worker, sample, tmp_path):
    client = worker.client
    active = client.get("/info").json()["active_model_version"]
    reply = client.post("/cases/case05/infer")
    assert reply.status_code == 200 and reply.headers["x-model-version"] == active
    path = tmp_path / "prediction.nii.gz"
    path.write_bytes(reply.content)
    assert gzip.decompress(reply.content)  # a gzipped NIfTI
    labelmap = nib.load(str(path))
    assert labelmap.shape == sample.truth["case05"].shape
    np.testing.assert_allclose(labelmap.affine, sample_affine(), atol=1e-4)
    assert set(np.unique(np.asarray(labelmap.dataobj))) <= {0, 1}
    stored = client.get("/cases/case05/prediction")
    assert stored.status_code == 200 and stored.content == reply.content
    assert client.get("/cases/case04/image").status_code == 200


def test_rollback(worker):
    client = worker.client
    reply = client.post("/models/v0001/activate")
    assert reply.status_code == 200 and reply.json() == {"active_model_version": "v0001"}
    assert client.get("/info").json()["active_model_version"] == "v0001"
    # Scores came from v0001: back under v0001 the model is current again, but two of the ranked cases were
    # labelled since the ranking, so it stays stale for that reason (its diversity pick did not know them).
    assert {i["stale_reason"] for i in client.get("/worklist").json()["items"]} == {"labels"}
    assert client.post("/models/v0002/activate").json() == {"active_model_version": "v0002"}
    assert client.post("/models/v0099/activate").status_code == 404
    assert client.post("/models/latest/activate").status_code == 400


def test_a_rollback_during_an_adapt_job_stands(worker):
    """Issue 18: a finished job activates its version only while its parent is still active."""
    client = worker.client
    assert client.post("/models/v0002/activate").status_code == 200
    adapt = client.post("/adapt", json={"steps": 60, "use_pseudo_labels": False}).json()
    wait_training(client, adapt["job_id"])  # the job trains from v0002
    assert client.post("/models/v0001/activate").status_code == 200  # the clinician rejects v0002
    job = wait_job(client, adapt["job_id"], deadline_s=300)
    assert job["state"] == "succeeded", job["error"]
    result = job["result"]
    assert result["parent"] == "v0002" and result["activated"] is False and result["active_version"] == "v0001"
    assert "changed from its parent v0002 to v0001" in result["not_activated"] == result["reason"]
    assert client.get("/info").json()["active_model_version"] == "v0001"
    listed = {m["version"]: m for m in client.get("/models").json()}
    new = listed[result["version"]]
    assert not new["active"] and new["not_activated"] == result["not_activated"] and new["gate"] is not None
    assert client.post("/models/v0002/activate").status_code == 200  # as the earlier tests left it


def _child_pid(sample, job_id):
    with sqlite3.connect(sample.datastore / "asfda.db") as db:
        return db.execute("SELECT pid FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]


def test_cancel_running_adapt_keeps_model_and_labels_and_queue_order(worker, sample):
    client = worker.client
    versions_before = client.get("/models").json()
    pseudo_dir = sample.datastore / "labels" / "pseudo"
    pseudo_before = {p.name: p.read_bytes() for p in pseudo_dir.iterdir()}
    adapt = client.post("/adapt", json={"steps": 100000}).json()
    wait_training(client, adapt["job_id"])
    child = _child_pid(sample, adapt["job_id"])
    assert psutil.pid_exists(child)

    # While training holds the queue: a rank job, then an inference that must jump ahead of it.
    rank = client.post("/rank", json={"budget_k": 2}).json()
    inferred = {}
    thread = threading.Thread(target=lambda: inferred.update(reply=client.post("/cases/case03/infer")))
    thread.start()
    wait_for(lambda: any(j["kind"] == "infer" for j in client.get("/jobs").json()), 30, "the infer job")
    assert client.post("/adapt", json={"steps": 5}).status_code == 409  # one adapt at a time

    cancelled = client.post(f"/jobs/{adapt['job_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie", 10, "child exit")
    thread.join(timeout=120)
    assert inferred["reply"].status_code == 200
    rank = wait_job(client, rank["job_id"])
    infer = [j for j in client.get("/jobs").json() if j["kind"] == "infer"][0]
    assert rank["state"] == "succeeded" and infer["finished"] <= rank["started"]

    assert client.get("/models").json() == versions_before
    assert {p.name: p.read_bytes() for p in pseudo_dir.iterdir()} == pseudo_before
    assert client.get(f"/jobs/{adapt['job_id']}").json()["state"] == "cancelled"
    jobs = client.get("/jobs").json()
    assert [j["created"] for j in jobs] == sorted((j["created"] for j in jobs), reverse=True)
    # Cancelling a finished job changes nothing.
    assert client.post(f"/jobs/{rank['job_id']}/cancel").json()["state"] == "succeeded"
