"""The worker client against real HTTP servers on 127.0.0.1 that misbehave on purpose."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ASFDALib.client import WorkerClient, WorkerError, checkCaseId


class Handler(BaseHTTPRequestHandler):
    """Routes by path; the server object carries what the test wants to observe."""

    def log_message(self, *args):
        pass

    def _send(self, status, payload, contentType="application/json", headers=None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", contentType)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.headers.get("Authorization") != "Bearer s3cret":
            return self._send(401, {"detail": "Missing or invalid token"})
        if self.path == "/slow":
            time.sleep(3)
            return self._send(200, {})
        if self.path.startswith("/worklist"):
            return self._send(200, {"items": [], "path": self.path})
        if self.path == "/cases/c1/image":
            return self._send(200, b"NIFTI-BYTES", "application/octet-stream")
        if self.path == "/cases/c1/prediction":
            return self._send(404, {"detail": "No prediction for case c1"})
        if self.path == "/notjson":
            return self._send(500, b"<html>Internal Server Error</html>", "text/html")
        return self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = self._body()
        if self.path == "/rank":
            self.server.bodies.append(json.loads(body))
            return self._send(202, {"job_id": "j1", "kind": "rank", "state": "queued"})
        if self.path == "/cases/c1/infer":
            return self._send(200, b"LABEL", "application/octet-stream", {"X-Model-Version": "v3"})
        if self.path == "/adapt":
            return self._send(422, {"detail": [
                {"loc": ["body", "steps"], "msg": "Input should be greater than 0", "type": "greater_than"}]})
        return self._send(404, {"detail": "Not Found"})

    def do_PUT(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = self._body()
        self.server.bodies.append((self.headers.get("Content-Type"), body))
        self.server.putHeaders.append({k: self.headers.get(k) for k in ("If-Match", "If-None-Match", "X-ASFDA-Client")})
        if b"CHANGED" in body:
            return self._send(409, {"detail": "case 'c1' changed since dr-who opened it from r0001: it now has "
                                              "revision r0002 by dr-no"})
        if b"EMPTY" in body:
            return self._send(422, {"detail": "Label for case c1 is empty"})
        return self._send(200, {"case_id": "c1", "tag": "final", "label_values": [1, 2]})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # the slow handler must not delay teardown
    httpd.seen, httpd.bodies, httpd.putHeaders = [], [], []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def clientFor(server, token="s3cret", timeout=5.0):
    return WorkerClient(f"127.0.0.1:{server.server_address[1]}", token=token, timeout=timeout)


def test_token_is_sent_as_bearer_header(server):
    client = clientFor(server)
    assert client.health() == {"status": "ok"}
    assert client.worklist(k=4)["path"] == "/worklist?k=4"
    assert server.seen[-1][2] == "Bearer s3cret"


def test_missing_token_gives_readable_401(server):
    with pytest.raises(WorkerError) as info:
        clientFor(server, token="").cases()
    message = str(info.value)
    assert info.value.status == 401
    assert "HTTP 401" in message and "check the worker token" in message
    assert "Missing or invalid token" in message
    assert "\n" not in message


def test_validation_error_list_becomes_one_line(server):
    with pytest.raises(WorkerError) as info:
        clientFor(server).adapt(steps=5)
    assert info.value.status == 422
    assert str(info.value) == "Worker POST /adapt failed: HTTP 422: steps: Input should be greater than 0"


def test_non_json_error_body_is_still_readable(server):
    with pytest.raises(WorkerError, match=r"HTTP 500: <html>Internal Server Error</html>"):
        clientFor(server)._json("GET", "/notjson")


def test_timeout_fires_quickly(server):
    client = clientFor(server, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"did not answer GET /slow within 0.3 s"):
        client._json("GET", "/slow")
    assert time.monotonic() - start < 1.5


def test_unreachable_worker_is_reported(server):
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(WorkerError, match=rf"Cannot reach worker at http://127.0.0.1:{port}"):
        WorkerClient(f"http://127.0.0.1:{port}", timeout=1).info()


def test_rank_posts_budget(server):
    job = clientFor(server).rank(budgetK=3)
    assert job["job_id"] == "j1"
    assert server.bodies[-1] == {"strategy": "asfda", "budget_k": 3}


def test_downloads_are_written_atomically(server, tmp_path):
    client = clientFor(server)
    client.downloadImage("c1", tmp_path / "c1.nii.gz")
    assert (tmp_path / "c1.nii.gz").read_bytes() == b"NIFTI-BYTES"
    assert client.infer("c1", tmp_path / "pred.nii.gz") == "v3"
    assert (tmp_path / "pred.nii.gz").read_bytes() == b"LABEL"
    with pytest.raises(WorkerError, match="No prediction for case c1") as info:
        client.downloadPrediction("c1", tmp_path / "p2.nii.gz")
    assert info.value.status == 404
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.nii.gz", "pred.nii.gz"]


def test_label_upload_is_multipart_with_author(server, tmp_path):
    label = tmp_path / "c1-label.nii.gz"
    label.write_bytes(b"\x00\x01LABELDATA")
    reply = clientFor(server).uploadLabel("c1", label, author="dr-who")
    assert reply["label_values"] == [1, 2]
    contentType, body = server.bodies[-1]
    assert contentType.startswith("multipart/form-data; boundary=")
    assert b'name="author"\r\n\r\ndr-who' in body
    assert b'filename="c1-label.nii.gz"' in body and b"\x00\x01LABELDATA" in body
    label.write_bytes(b"EMPTY")
    with pytest.raises(WorkerError, match="PUT /cases/c1/label failed: HTTP 422: Label for case c1 is empty"):
        clientFor(server).uploadLabel("c1", label)


def test_label_upload_names_the_revision_it_was_opened_from(server, tmp_path):
    label = tmp_path / "c1-label.nii.gz"
    label.write_bytes(b"LABELDATA")
    client = clientFor(server)
    client.uploadLabel("c1", label, revision="r0001")
    client.uploadLabel("c1", label, revision="")  # the case had no label when it was opened
    client.uploadLabel("c1", label)  # a worker older than revisions: no condition
    client.uploadLabel("c1", label, revision="r0001", overwrite=True)
    assert [(h["If-Match"], h["If-None-Match"]) for h in server.putHeaders] == [
        ('"r0001"', None),
        (None, "*"),
        (None, None),
        ('"r0001"', None),
    ]
    assert {h["X-ASFDA-Client"] for h in server.putHeaders} == {"slicer/asfda-module"}
    assert [path for method, path, _ in server.seen if method == "PUT"][-1] == "/cases/c1/label?overwrite=true"
    label.write_bytes(b"CHANGED")
    with pytest.raises(WorkerError, match="HTTP 409: case 'c1' changed since dr-who .* by dr-no") as refused:
        client.uploadLabel("c1", label, revision="r0001")
    assert refused.value.status == 409


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 200, "a..b"])
def test_bad_case_ids_never_reach_a_url(bad):
    with pytest.raises(WorkerError, match="Invalid case id"):
        checkCaseId(bad)


def test_url_is_required():
    with pytest.raises(WorkerError, match="No worker URL"):
        WorkerClient("  ")
