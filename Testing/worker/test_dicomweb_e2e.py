"""`asfda serve --dicomweb` end to end over HTTP against a real Orthanc (issue 18): the worker lists the PACS,
ranks its series, serves one as a volume, takes a clinician's label for it and writes it back as a DICOM SEG
that lands in Orthanc, referencing the series it segments."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from asfda.synth.anatomy import mni152
from asfda.worker.sample import make_sample_datastore
from orthanc_helpers import OrthancProcess, ct_series
from worker_helpers import WorkerProcess, wait_for, wait_job

SHAPE = (32, 32, 16)
N_SERIES = 3


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    process = OrthancProcess(tmp_path_factory.mktemp("orthanc-e2e"))
    found = mni152(spacing=8.0, shape=SHAPE)
    affine = found.affine.copy()
    affine[:3, :3] = np.diag([-7.5, 7.0, 8.0])
    rng = np.random.default_rng(1)
    process.series = []
    for index in range(N_SERIES):
        volume = found.image * rng.uniform(0.8, 1.2) + rng.normal(0, 0.02, found.image.shape)
        slices = ct_series(volume, affine, f"e2e head {index}", patient=f"E{index}")
        process.upload(slices)
        process.series.append(slices[0].SeriesInstanceUID)
    process.label = found.label
    yield process
    process.stop()


def _seg_uids(pacs) -> set:
    from dicomweb_client.api import DICOMwebClient

    found = DICOMwebClient(pacs.dicomweb).search_for_series(search_filters={"Modality": "SEG"})
    return {item["0020000E"]["Value"][0] for item in found}


def test_serve_dicomweb_rank_open_submit_and_the_seg_lands_in_the_pacs(pacs, tmp_path):
    root = tmp_path / "store"
    make_sample_datastore(root, n_cases=0, size=16)
    worker = WorkerProcess(root, args=["--dicomweb", pacs.dicomweb]).wait_healthy()
    try:
        client = worker.client
        assert sorted(c["case_id"] for c in client.get("/cases").json()) == sorted(pacs.series)
        job = client.post("/rank", json={"strategy": "asfda", "budget_k": 2})
        assert job.status_code == 202, job.text
        done = wait_job(client, job.json()["job_id"], deadline_s=300)
        assert done["state"] == "succeeded", done
        items = client.get("/worklist").json()["items"]
        assert sorted(i["case_id"] for i in items) == sorted(pacs.series)
        case_id = next(i["case_id"] for i in items if i["selected"])

        reply = client.get(f"/cases/{case_id}/image")
        assert reply.status_code == 200, reply.text
        served = tmp_path / f"{case_id}.nii.gz"
        served.write_bytes(reply.content)
        image = nib.load(str(served))
        assert image.shape == SHAPE
        label = nib.Nifti1Image((np.asarray(pacs.label) > 0).astype(np.uint8), image.affine)
        before = _seg_uids(pacs)
        submitted = client.put(
            f"/cases/{case_id}/label",
            files={"file": ("label.nii.gz", io.BytesIO(_gz(label)), "application/octet-stream")},
            data={"author": "Dr. E2E"},
        )
        assert submitted.status_code == 200, submitted.text

        wait_for(lambda: len(_seg_uids(pacs) - before) == 1, 120, "the SEG to land in Orthanc", interval=0.5)
        status = client.get("/dicomweb").json()
        assert status["pending_segs"] == [] and status["fetches"] >= 1
        audit = [entry["action"] for entry in client.get(f"/cases/{case_id}/audit").json()]
        assert "SEG written to PACS" in audit
    finally:
        worker.stop()


def _gz(image: nib.Nifti1Image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes())
