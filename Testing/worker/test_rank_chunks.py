"""A long rank steps aside between chunks for a clinician's Infer request, then resumes from the signal cache."""

from __future__ import annotations

import shutil

import pytest
from worker_helpers import WorkerProcess, wait_for, wait_job

POOL = 40


@pytest.fixture(scope="module")
def big_pool_worker(sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks") / "store"
    shutil.copytree(sample.datastore, root)
    for source in sorted((root / "images").glob("case*.nii.gz")):
        for copy in range(POOL // 6 + 1):
            shutil.copy(source, root / "images" / f"{source.name[:-7]}-{copy}.nii.gz")
    process = WorkerProcess(root).wait_healthy()
    yield process
    process.stop()


def test_infer_is_served_between_rank_chunks(big_pool_worker):
    client = big_pool_worker.client
    rank_id = client.post("/rank", json={"strategy": "asfda", "budget_k": 2, "chunk_size": 1}).json()["job_id"]

    def scoring():
        job = client.get(f"/jobs/{rank_id}").json()
        return job if job["state"] == "running" and job["progress"]["phase"] == "score" else None

    wait_for(scoring, 120, "the rank to start scoring", interval=0.02)
    infer = client.post("/cases/case00/infer", timeout=120)  # replies with the labelmap once predicted
    assert infer.status_code == 200, infer.text
    # The clinician did not wait for the whole pool: the rank is still queued or running behind the Infer.
    assert client.get(f"/jobs/{rank_id}").json()["state"] in ("queued", "running")
    ranked = wait_job(client, rank_id)
    assert ranked["state"] == "succeeded", ranked["error"]
    total = len(client.get("/cases").json())
    result = ranked["result"]
    assert result["ranked"] == total and result["scored"] + result["cached"] == total
    assert 1 <= result["cached"] < total  # the run after the Infer resumed from what the first part cached
