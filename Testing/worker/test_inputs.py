"""Bad input gets a 4xx with a one-line detail and the worker keeps serving; token; loopback; concurrency."""

from __future__ import annotations

import gzip
import http.client
import threading

import httpx
import nibabel as nib
import nrrd
import numpy as np
import psutil
import pytest
from asfda.worker.sample import sample_affine
from worker_helpers import TOKEN, WorkerProcess, upload

LIMIT_MB = 1


@pytest.fixture(scope="module")
def worker(sample):
    # Token from the environment (ASFDA_TOKEN), no --host: the defaults under test.
    process = WorkerProcess(sample.datastore, ["--max-upload-mb", str(LIMIT_MB)], token=TOKEN).wait_healthy()
    yield process
    process.stop()


def one_line_error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def nifti_file(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, sample_affine() if affine is None else affine), str(path))
    return path


def test_token_required_everywhere_but_health(worker):
    bare = httpx.Client(base_url=worker.url, timeout=30)
    assert bare.get("/health").json() == {"status": "ok"}
    for method, path in [("GET", "/info"), ("GET", "/cases"), ("GET", "/openapi.json"), ("POST", "/rank")]:
        one_line_error(bare.request(method, path), 401)
    one_line_error(bare.get("/info", headers={"Authorization": "Bearer wrong"}), 401)
    assert "/cases/{case_id}/label" in worker.client.get("/openapi.json").json()["paths"]


def test_binds_loopback_by_default(worker):
    addresses = {c.laddr.ip for c in psutil.Process(worker.process.pid).net_connections() if c.status == "LISTEN"}
    assert addresses == {"127.0.0.1"}


def test_bad_labels_are_refused_with_reasons(worker, sample, tmp_path):
    client, truth = worker.client, sample.truth["case01"]
    cases = {
        "shape": (nifti_file(tmp_path / "s.nii.gz", np.zeros((8, 8, 8), np.uint8)), "shape"),
        "origin": (nifti_file(tmp_path / "o.nii.gz", truth, np.diag([-1.5, 1.2, 2.0, 1.0])), "origin"),
        "values": (nifti_file(tmp_path / "v.nii.gz", truth * 3), "label values"),
        "empty": (nifti_file(tmp_path / "e.nii.gz", np.zeros_like(truth)), "empty"),
    }
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not a volume" * 50)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(sample.labels["case01"].read_bytes())[:200])
    cases["garbage"], cases["truncated"] = (garbage, "cannot read"), (truncated, "cannot read")
    for name, (path, reason) in cases.items():
        assert reason in one_line_error(upload(client, "case01", path), 422), name
    one_line_error(client.put("/cases/case01/label", json={"file": "x"}), 400)
    one_line_error(client.put("/cases/case01/label", data={"author": "a"}, files={"other": ("x", b"1")}), 422)
    truncated_body = client.put(
        "/cases/case01/label", content=b"--b\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    one_line_error(truncated_body, 422)  # the body ends before any complete part
    no_boundary = client.put("/cases/case01/label", content=b"x", headers={"Content-Type": "multipart/form-data"})
    one_line_error(no_boundary, 400)
    assert client.get("/cases").json()[1]["status"] == "unlabeled"  # nothing refused was stored


def test_oversized_bodies_are_refused(worker, sample):
    big = np.random.default_rng(0).bytes(LIMIT_MB * 1024 * 1024 + 4096)
    reply = worker.client.put("/cases/case01/label", files={"file": ("big.nii", big)})
    assert "limit" in one_line_error(reply, 413)

    def chunks():  # a well-formed multipart body without Content-Length: the limit must hold while it streams
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.nii"\r\n\r\n'
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]
        yield b"\r\n--xyz--\r\n"

    reply = worker.client.put(
        "/cases/case01/label", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )
    one_line_error(reply, 413)
    assert not list((sample.datastore / ".uploads").iterdir())


def test_ids_and_unknowns(worker):
    client = worker.client
    for bad in ["a..b", "a%2Fb", "%2E%2E", ".hidden", "x" * 200]:
        one_line_error(client.get(f"/cases/{bad}/image"), 400)
        one_line_error(client.post(f"/cases/{bad}/infer"), 400)
    # A raw '..' segment, as a client that does not normalise paths sends it.
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=30)
    connection.request("GET", "/cases/../image", headers={"Authorization": f"Bearer {TOKEN}"})
    assert connection.getresponse().status == 400
    connection.close()
    one_line_error(client.get("/cases/nosuchcase/image"), 404)
    one_line_error(client.get("/cases/case02/prediction"), 404)
    one_line_error(client.get("/jobs/0123456789abcdef"), 404)
    one_line_error(client.post("/jobs/0123456789abcdef/cancel"), 404)
    one_line_error(client.post("/models/v0042/activate"), 404)
    assert "budget_k" in one_line_error(client.post("/rank", json={"budget_k": 0}), 422)
    one_line_error(client.post("/rank", json={"strategy": "nonsense"}), 422)
    one_line_error(client.post("/adapt", json={"steps": 5, "typo": 1}), 422)
    one_line_error(client.post("/adapt", json={"steps": 5}), 409)  # no clinician labels yet
    assert client.get("/health").status_code == 200


def test_nrrd_upload(worker, sample, tmp_path):
    # Slicer writes NRRD in LPS: flip the first two axes of the RAS affine.
    lps = np.diag([-1.0, -1.0, 1.0]) @ sample_affine()[:3]
    header = {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]}
    path = tmp_path / "case00.seg.nrrd"
    nrrd.write(str(path), sample.truth["case00"], header)
    reply = upload(worker.client, "case00", path)
    assert reply.status_code == 200, reply.text
    stored = nib.load(str(sample.datastore / "labels" / "final" / "case00.nii.gz"))
    np.testing.assert_array_equal(np.asarray(stored.dataobj), sample.truth["case00"])


def test_concurrent_label_submissions(worker, sample):
    replies = {}

    def submit(client_name, case_ids):
        with httpx.Client(base_url=worker.url, timeout=120, headers=WorkerProcess.auth(TOKEN)) as client:
            for case_id in case_ids:
                replies[(client_name, case_id)] = upload(client, case_id, sample.labels[case_id], author=client_name)

    threads = [
        threading.Thread(target=submit, args=("alice", ["case02", "case03", "case04"])),
        threading.Thread(target=submit, args=("bob", ["case05", "case04", "case03"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(replies) == 6
    assert all(replies[key].status_code == 200 for key in [("alice", "case02"), ("bob", "case05")])
    # Both submit case03 and case04 without naming a revision: the first is stored, the second finds the
    # other's revision and is refused with both named (no silent lost update).
    for case_id in ["case03", "case04"]:
        codes = sorted((replies[(name, case_id)].status_code, name) for name in ["alice", "bob"])
        assert [code for code, _ in codes] == [200, 409], codes
        refused = replies[(codes[1][1], case_id)].json()["detail"]
        assert codes[0][1] in refused and codes[1][1] in refused and "r0001" in refused
    statuses = {c["case_id"]: c["status"] for c in worker.client.get("/cases").json()}
    assert all(statuses[c] == "final" for c in ["case02", "case03", "case04", "case05"])
    for case_id in ["case02", "case03", "case04", "case05"]:
        stored = nib.load(str(sample.datastore / "labels" / "final" / f"{case_id}.nii.gz"))
        np.testing.assert_array_equal(np.asarray(stored.dataobj), sample.truth[case_id])


def test_a_case_without_structure_is_an_explicit_audited_verdict_that_leaves_the_pool(worker, sample, tmp_path):
    client, truth = worker.client, sample.truth["case01"]
    empty = nifti_file(tmp_path / "none.nii.gz", np.zeros_like(truth))
    refused = one_line_error(upload(client, "case01", empty), 422)  # before: refused with no way to say it
    assert "no_structure=true" in refused
    with open(sample.labels["case01"], "rb") as handle:  # the verdict must be what the file says
        drawn = client.put(
            "/cases/case01/label?no_structure=true",
            files={"file": ("l.nii.gz", handle, "application/octet-stream")},
            data={"author": "dr-n"},
        )
    assert "holds values [1]" in one_line_error(drawn, 422)
    with open(empty, "rb") as handle:
        reply = client.put(
            "/cases/case01/label?no_structure=true",
            files={"file": ("none.nii.gz", handle, "application/octet-stream")},
            data={"author": "dr-n"},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["label_values"] == [] and reply.json()["revision"] == "r0001"
    audit = client.get("/cases/case01/audit").json()
    assert audit[-1]["action"] == "label submitted" and audit[-1]["detail"]["no_structure"] is True
    assert next(c for c in client.get("/cases").json() if c["case_id"] == "case01")["status"] == "final"
    handed = client.post("/next", headers={"X-Annotator": "dr-m"})  # "Next case" no longer offers it
    assert handed.status_code == 200 and (handed.json() is None or handed.json()["case_id"] != "case01")
