"""Effort with a label upload over real HTTP: the `effort` field is checked (a malformed record is one 422 line,
nothing stored), kept with the revision, the label record and the audit, and shown as minutes in /cases and
/worklist."""

from __future__ import annotations

import json

import pytest
from worker_helpers import WorkerProcess, wait_job

RECORD = {
    "active_seconds": 150.0,
    "idle_gap_threshold_s": 60.0,
    "voxels_changed": 420,
    "slices_changed": 3,
    "effects": ["Paint", "Erase"],
    "opened_at": "2026-12-03T09:00:00+00:00",
    "submitted_at": "2026-12-03T09:04:00+00:00",
    "client": "slicer/asfda-module",
}


@pytest.fixture(scope="module")
def worker(sample):
    process = WorkerProcess(sample.datastore).wait_healthy()
    yield process
    process.stop()


def put_label(client, case_id, path, effort):
    with open(path, "rb") as handle:
        files = {"file": ("label.nii.gz", handle, "application/octet-stream")}
        data = {"author": "dr-effort"}
        if effort is not None:
            data["effort"] = effort
        return client.put(f"/cases/{case_id}/label", files=files, data=data)


def one_line_422(reply) -> str:
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    return detail


def test_effort_is_checked_stored_with_the_revision_and_shown_in_the_worklist(worker, sample):
    client = worker.client
    job = client.post("/rank", json={"strategy": "random", "budget_k": 1})
    assert wait_job(client, job.json()["job_id"])["state"] == "succeeded"
    case_id = next(item["case_id"] for item in client.get("/worklist").json()["items"] if item["selected"])
    label = sample.labels[case_id]

    malformed = {
        "not json": ("{active", "not JSON"),
        "negative": (json.dumps({**RECORD, "active_seconds": -1}), "active_seconds"),
        "too many effects": (json.dumps({**RECORD, "effects": ["Paint"] * 51}), "effects"),
        "long effect": (json.dumps({**RECORD, "effects": ["x" * 65]}), "effects"),
        "unknown key": (json.dumps({**RECORD, "password": "x"}), "password"),
        "missing": (json.dumps({"active_seconds": 5}), "idle_gap_threshold_s"),
    }
    for name, (text, words) in malformed.items():
        assert words in one_line_422(put_label(client, case_id, label, text)), name
    assert client.get(f"/cases/{case_id}/revisions").json() == []
    assert next(c for c in client.get("/cases").json() if c["case_id"] == case_id)["status"] == "unlabeled"

    reply = put_label(client, case_id, label, json.dumps(RECORD))
    assert reply.status_code == 200, reply.text
    assert reply.json()["effort"]["voxels_changed"] == 420
    (revision,) = client.get(f"/cases/{case_id}/revisions").json()
    assert revision["effort"] == RECORD
    submitted = [e for e in client.get(f"/cases/{case_id}/audit").json() if e["action"] == "label submitted"]
    assert submitted[-1]["detail"]["effort"] == RECORD
    item = next(i for i in client.get("/worklist").json()["items"] if i["case_id"] == case_id)
    assert item["effort_minutes"] == 2.5
    case = next(c for c in client.get("/cases").json() if c["case_id"] == case_id)
    assert case["effort_minutes"] == 2.5
    other = next(c for c in client.get("/cases").json() if c["case_id"] != case_id)
    assert other["effort_minutes"] is None
