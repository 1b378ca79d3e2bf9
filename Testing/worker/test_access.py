"""Who can reach the worker (issue 19): Host/Origin on loopback, the datastore token, roles, no token on a command line.

In-process (TestClient, no lifespan: the job runner never starts): every check here refuses before a
route touches the queue.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat

import nibabel as nib
import nrrd
import numpy as np
import pytest
from asfda.cli.main import main as asfda_main
from asfda.core.errors import ConfigError
from asfda.worker.app import ROUTERS, create_app
from asfda.worker.roles import ROUTE_ROLES, Role, check_every_route_has_a_role, route_keys
from asfda.worker.settings import WorkerSettings
from asfda.worker.tokens import datastore_token_path, ensure_datastore_token, read_token_file
from fastapi import APIRouter
from fastapi.testclient import TestClient

PORT = 8765
LOCAL = f"http://127.0.0.1:{PORT}"
ALICE = "alice-token-0123456789"
ADMIN = "admin-token-0123456789"
CASE = "/cases/{case_id:path}"
NRRD_IMAGE = (np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8) - 100) * 3

# The review's table: changing a route's role means changing this line too.
EXPECTED_ROLES = {
    ("GET", "/health"): "OPEN",
    ("GET", "/info"): "ANNOTATOR",
    ("GET", "/models"): "ANNOTATOR",
    ("POST", "/models/{version}/activate"): "ADMIN",
    ("GET", "/report"): "ANNOTATOR",
    ("GET", "/cases"): "ANNOTATOR",
    ("GET", "/worklist"): "ANNOTATOR",
    ("GET", CASE + "/image"): "ANNOTATOR",
    ("GET", CASE + "/prediction"): "ANNOTATOR",
    ("POST", CASE + "/infer"): "ANNOTATOR",
    ("PUT", CASE + "/label"): "ANNOTATOR",
    ("POST", "/next"): "ANNOTATOR",
    ("GET", "/leases"): "ANNOTATOR",
    ("POST", CASE + "/lease"): "ANNOTATOR",
    ("DELETE", CASE + "/lease"): "ANNOTATOR",
    ("GET", CASE + "/audit"): "ANNOTATOR",
    ("GET", CASE + "/revisions"): "ANNOTATOR",
    ("GET", CASE + "/revisions/{revision}"): "ANNOTATOR",
    ("GET", "/dicomweb"): "ANNOTATOR",
    ("POST", "/dicomweb/refresh"): "ADMIN",
    ("POST", "/dicomweb/retry"): "ADMIN",
    ("POST", "/rank"): "ADMIN",
    ("POST", "/adapt"): "ADMIN",
    ("GET", "/jobs"): "ANNOTATOR",
    ("GET", "/jobs/{job_id}"): "ANNOTATOR",
    ("POST", "/jobs/{job_id}/cancel"): "ADMIN",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("access")
    annotators = root / "annotators.json"
    annotators.write_text(json.dumps({"alice": ALICE}))
    images = root / "store" / "images"
    images.mkdir(parents=True)
    nrrd.write(
        str(images / "case00.nrrd"),
        NRRD_IMAGE,
        {
            "space": "left-posterior-superior",
            "space directions": np.eye(3),
            "space origin": np.zeros(3),
            "encoding": "gzip",
        },
    )
    settings = WorkerSettings.build(root / "store", "127.0.0.1", PORT, "cpu", ADMIN, 1, annotators)
    return create_app(settings)


def store_token(app) -> str:
    return read_token_file(datastore_token_path(app.state.worker.store.root))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def one_line(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def test_loopback_worker_answers_only_loopback_host_names(app):
    token = store_token(app)
    for base in (LOCAL, f"http://localhost:{PORT}", f"http://[::1]:{PORT}"):
        assert TestClient(app, base_url=base).get("/info", headers=bearer(token)).status_code == 200, base
    # DNS rebinding: a page's own name pointed at 127.0.0.1; or the right name on another port.
    for base in (f"http://evil.example:{PORT}", "http://127.0.0.1:9999", "http://127.0.0.1.evil.example:8765"):
        client = TestClient(app, base_url=base)
        assert "refused" in one_line(client.get("/info", headers=bearer(token)), 403), base
        one_line(client.get("/health"), 403)


def test_foreign_origin_is_refused_own_origin_accepted(app):
    client, token = TestClient(app, base_url=LOCAL), store_token(app)
    for origin in ("http://evil.example", "null", "http://localhost:8765"):  # localhost is not 127.0.0.1's origin
        assert "Origin" in one_line(client.get("/info", headers={**bearer(token), "Origin": origin}), 403)
    one_line(client.post("/rank", headers={**bearer(token), "Origin": "http://evil.example"}, json={}), 403)
    one_line(client.get("/info", headers={**bearer(token), "Sec-Fetch-Site": "cross-site"}), 403)
    assert client.get("/info", headers={**bearer(token), "Origin": LOCAL}).status_code == 200  # its own /docs


def test_loopback_worker_needs_the_datastore_token(app):
    root = app.state.worker.store.root
    path = datastore_token_path(root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = store_token(app)
    assert len(token) >= 32 and ensure_datastore_token(root) == token  # the same on every start
    client = TestClient(app, base_url=LOCAL)
    one_line(client.get("/info"), 401)
    one_line(client.get("/cases/case00/image"), 401)
    assert client.get("/info", headers=bearer(token)).status_code == 200
    assert client.get("/health").status_code == 200


def test_every_route_has_its_role(app):
    assert {key: role.name for key, role in ROUTE_ROLES.items()} == EXPECTED_ROLES
    assert route_keys(ROUTERS) == sorted(EXPECTED_ROLES)
    # The published schema agrees: no route reaches the app by another way.
    schema = TestClient(app, base_url=LOCAL).get("/openapi.json", headers=bearer(store_token(app))).json()
    published = sorted((m.upper(), p) for p, ops in schema["paths"].items() for m in ops)
    assert published == sorted((m, p.replace(":path}", "}")) for m, p in EXPECTED_ROLES)


def test_a_route_without_a_role_stops_the_worker():
    router = APIRouter()

    @router.get("/unguarded")
    def unguarded() -> None:
        return None

    with pytest.raises(RuntimeError, match="GET /unguarded"):
        check_every_route_has_a_role([*ROUTERS, router])


def _concrete(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}",
        lambda m: {"version": "v0001", "job_id": "0" * 16}.get(m.group(0)[1:-1].split(":")[0], "case00"),
        path,
    )


def test_annotator_token_is_refused_on_every_admin_route(app):
    client = TestClient(app, base_url=LOCAL)
    admin_routes = [key for key, role in ROUTE_ROLES.items() if role == Role.ADMIN]
    assert len(admin_routes) == 6
    for method, path in admin_routes:
        reply = client.request(method, _concrete(path), headers=bearer(ALICE), json={})
        assert "administrator" in one_line(reply, 403), (method, path)
        # The administrator is not refused for their role (each answers for its own reason instead).
        for token in (ADMIN, store_token(app)):
            assert client.request(method, _concrete(path), headers=bearer(token), json={}).status_code != 403
    force = client.delete("/cases/case00/lease?force=true", headers=bearer(ALICE))
    assert "administrator" in one_line(force, 403)
    # Annotator routes stay open to the annotator.
    assert client.get("/cases", headers=bearer(ALICE)).status_code == 200
    assert client.get("/jobs", headers=bearer(ALICE)).status_code == 200


def test_token_file_and_environment(tmp_path, monkeypatch):
    for name in ("ASFDA_TOKEN", "ASFDA_WORKER_TOKEN", "ASFDA_WORKER_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN + "\n")
    os.chmod(token_file, 0o600)
    built = WorkerSettings.build(tmp_path, "0.0.0.0", PORT, "cpu", None, 1, token_file=token_file)
    assert built.check().token == ADMIN
    os.chmod(token_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        WorkerSettings.build(tmp_path, "0.0.0.0", PORT, "cpu", None, 1, token_file=token_file)
    token_file.write_text("short\n")
    os.chmod(token_file, 0o600)
    with pytest.raises(ConfigError, match="at least 16"):
        WorkerSettings.build(tmp_path, "0.0.0.0", PORT, "cpu", None, 1, token_file=token_file)
    monkeypatch.setenv("ASFDA_WORKER_TOKEN", ALICE)
    assert WorkerSettings.build(tmp_path, "0.0.0.0", PORT, "cpu", None, 1).check().token == ALICE


def test_token_on_the_command_line_is_deprecated(tmp_path, capsys, monkeypatch):
    for name in ("ASFDA_TOKEN", "ASFDA_WORKER_TOKEN", "ASFDA_WORKER_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    # A start refused for another reason (a negative limit) still warns about --token first.
    code = asfda_main(
        ["serve", "--datastore", str(tmp_path), "--device", "cpu", "--token", ADMIN, "--max-upload-mb", "-1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--token is deprecated" in err and "--token-file" in err
    code = asfda_main(
        [
            "serve",
            "--datastore",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--device",
            "cpu",
            "--token-file",
            str(tmp_path / "missing"),
        ]
    )
    assert code == 2 and "cannot read" in capsys.readouterr().err


def test_image_is_streamed_compressed_in_its_own_voxel_type(app):
    client = TestClient(app, base_url=LOCAL)
    reply = client.get("/cases/case00/image", headers=bearer(store_token(app)))
    assert reply.status_code == 200 and reply.content[:2] == b"\x1f\x8b"  # gzip, not a raw float32 NIfTI
    served = nib.Nifti1Image.from_bytes(gzip.decompress(reply.content))
    assert served.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(served.dataobj), NRRD_IMAGE)
    cached = list((app.state.worker.store.root / ".image-cache" / "case00").iterdir())
    assert len(cached) == 1  # converted once, then streamed from this file
    assert client.get("/cases/case00/image", headers=bearer(store_token(app))).content == reply.content


def test_heavy_requests_beyond_the_bound_get_503_with_retry_after(app):
    client, slots = TestClient(app, base_url=LOCAL), app.state.heavy
    taken = [slots.try_acquire() for _ in range(slots.limit)]
    try:
        assert all(taken)
        reply = client.get("/cases/case00/image", headers=bearer(store_token(app)))
        assert "retry" in one_line(reply, 503) and reply.headers["Retry-After"].isdigit()
        put = client.put("/cases/case00/label", headers=bearer(store_token(app)), files={"file": ("x.nii", b"x")})
        one_line(put, 503)
    finally:
        for _ in taken:
            slots.release()
    assert client.get("/cases/case00/image", headers=bearer(store_token(app))).status_code == 200
