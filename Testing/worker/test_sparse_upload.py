"""Sparse annotation over real HTTP: a rank that asks for slices, the worklist showing them, a label upload with
its annotated-region mask (refused in one line when it does not fit, nothing stored), and the coverage reply."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from asfda.data.datastore import Datastore
from asfda.worker import tasks
from asfda.worker.sample import sample_affine
from asfda.worker.schemas import AdaptRequest
from worker_helpers import WorkerProcess, wait_job


@pytest.fixture(scope="module")
def worker(sample):
    process = WorkerProcess(sample.datastore).wait_healthy()
    yield process
    process.stop()


def nifti_file(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), sample_affine()), str(path))
    return path


def one_line_error(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def upload_sparse(client, case_id, label_path, mask_path):
    with open(label_path, "rb") as label, open(mask_path, "rb") as mask:
        files = {
            "file": ("label.nii.gz", label, "application/octet-stream"),
            "mask": ("label.mask.nii.gz", mask, "application/octet-stream"),
        }
        return client.put(f"/cases/{case_id}/label", files=files, data={"author": "dr-sparse"})


def test_sparse_rank_worklist_and_masked_upload(worker, sample, tmp_path):
    client = worker.client
    one_line_error(client.post("/rank", json={"budget_k": 1, "slices_per_volume": 2, "slice_axis": 3}), 422)
    job = client.post("/rank", json={"strategy": "random", "budget_k": 1, "slices_per_volume": 2})
    ranked = wait_job(client, job.json()["job_id"])
    assert ranked["state"] == "succeeded", ranked["error"]
    items = client.get("/worklist").json()["items"]
    (pick,) = [item for item in items if item["selected"]]
    requested = pick["requested_slices"]
    # The sample's spacing is (1.5, 1.2, 2.0): axis 2 has the thickest slices.
    assert requested["axis"] == 2 and len(requested["indices"]) == 2 and requested["rule"] == "even"
    assert all(item["requested_slices"] is None for item in items if not item["selected"])
    assert ranked["result"]["requested_slices"] == {pick["case_id"]: requested}

    case_id, truth = pick["case_id"], sample.truth[pick["case_id"]]
    mask = np.zeros_like(truth)
    mask[:, :, requested["indices"][0]] = 1  # one of the two requested slices drawn
    label_path = nifti_file(tmp_path / "label.nii.gz", truth * mask)
    whole = nifti_file(tmp_path / "whole.nii.gz", truth)  # the organ drawn beyond the one annotated slice
    bad_masks = {
        "empty": (label_path, np.zeros_like(mask), "no voxel"),
        "values": (label_path, mask * 3, "0 (not annotated) or 1"),
        "outside": (whole, mask, "outside the annotated mask"),
        "grid": (label_path, mask[:-1], "shape"),
    }
    for name, (label, data, words) in bad_masks.items():
        bad = nifti_file(tmp_path / f"{name}.nii.gz", data)
        assert words in one_line_error(upload_sparse(client, case_id, label, bad), 422), name
    assert next(c for c in client.get("/cases").json() if c["case_id"] == case_id)["status"] == "unlabeled"

    reply = upload_sparse(client, case_id, label_path, nifti_file(tmp_path / "mask.nii.gz", mask))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["annotated_mask"]["annotated_voxels"] == int(mask.sum())
    assert body["requested_slices"]["done"] == requested["indices"][:1]
    assert body["requested_slices"]["coverage"] == 0.5
    assert (sample.datastore / "labels" / "final" / f"{case_id}.mask.nii.gz").exists()


def test_mask_part_must_be_a_file(worker, sample):
    with open(sample.labels["case00"], "rb") as label:
        reply = worker.client.put(
            "/cases/case00/label", files={"file": ("l.nii.gz", label)}, data={"author": "a", "mask": "not a file"}
        )
    assert "'mask' part must be a file" in one_line_error(reply, 422)


@pytest.mark.parametrize("fill", [False, True])
def test_the_fill_option_reaches_adapt_datastore(monkeypatch, tmp_path, fill):
    seen = {}

    class Result:
        version, parent, metrics, pseudo_cases, gate = "v0002", "v0001", {}, [], {"activate": True}

    def fake_adapt(store, options, device, progress=None, should_stop=None, activate=True):
        seen["options"] = options
        return Result()

    monkeypatch.setattr("asfda.loop.session.adapt_datastore", fake_adapt)
    request = AdaptRequest(fill_unannotated_with_pseudo_labels=fill).model_dump(exclude_none=True)
    tasks.run_adapt(Datastore(tmp_path / "ds"), request, "cpu", lambda *a: None)
    assert seen["options"].fill_unannotated_with_pseudo_labels is fill
