"""A scripted ASFDA worker over real HTTP on 127.0.0.1, answering the routes the module calls.

Replies follow docs/worker-api.md in shape; behaviour is scripted (a refusal for Adapt before any label,
jobs that succeed at once) so the widget tests stay fast and deterministic.
"""

import gzip
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nibabel as nib
import numpy as np

LABELS = {"background": 0, "liver": 1, "tumor": 2}
SHAPE = (10, 9, 8)


def niftiBytes(array):
    image = nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.0, 1.0]))
    return gzip.compress(image.to_bytes())


def readNifti(data):
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(data)).dataobj)


class FakeWorker:
    def __init__(self, datastore="/data/store"):
        self.datastore = str(datastore)
        self.activeVersion = "v0001"
        self.models = ["v0001"]
        self.cases = ["case-a", "case-b"]
        self.labels = {}  # caseId -> uploaded array
        self.jobs = []
        self.requests = []
        self.failPaths = set()  # paths answered with HTTP 500
        rng = np.random.default_rng(0)
        self.image = rng.normal(size=SHAPE).astype(np.float32)
        self.prediction = np.zeros(SHAPE, dtype=np.uint8)
        self.prediction[2:6, 2:5, 3:6] = 1
        self.prediction[7, 6, 2] = 2
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handlerClass())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # -- replies ----------------------------------------------------------------------------------

    def row(self, caseId, rank):
        status = "final" if caseId in self.labels else "unlabeled"
        return {
            "case_id": caseId,
            "rank": rank,
            "dkd": 0.5 / rank,
            "asd": 0.2 * rank,
            "score": 1.0 / rank,
            "status": status,
            "model_version": self.activeVersion,
            "stale": False,
            "selected": rank == 1,
            "knowledge_source": "pool_mean",
        }

    def newJob(self, kind):
        job = {
            "job_id": f"job-{len(self.jobs) + 1}",
            "kind": kind,
            "state": "succeeded",
            "progress": {"phase": "done", "step": 1, "total": 1},
            "result": {},
            "error": None,
        }
        if kind == "adapt":
            version = f"v{len(self.models) + 1:04d}"
            self.models.append(version)
            self.activeVersion = version
            job["result"] = {"version": version}
        self.jobs.insert(0, job)
        return {**job, "state": "queued"}

    def route(self, method, path, body, headers):
        if path in self.failPaths:
            return 500, {"detail": "scripted failure"}, None
        if method == "GET" and path == "/health":
            return 200, {"status": "ok"}, None
        if method == "GET" and path == "/info":
            return (
                200,
                {
                    "version": "test",
                    "device": "cpu",
                    "gpu_memory_free_mb": None,
                    "active_model_version": self.activeVersion,
                    "datastore": self.datastore,
                    "labels": LABELS,
                    "label_colors": {},
                    "max_upload_bytes": 1 << 30,
                },
                None,
            )
        if method == "GET" and path.startswith("/worklist"):
            return (
                200,
                {
                    "active_model_version": self.activeVersion,
                    "budget_k": 1,
                    "strategy": "asfda",
                    "items": [self.row(c, i + 1) for i, c in enumerate(self.cases)],
                },
                None,
            )
        if method == "GET" and path == "/cases":
            return 200, [self.row(c, i + 1) for i, c in enumerate(self.cases)], None
        if method == "GET" and path == "/jobs":
            return 200, self.jobs, None
        if method == "GET" and path == "/models":
            return (
                200,
                [
                    {
                        "version": v,
                        "parent": None,
                        "created": "",
                        "metrics": {},
                        "note": "",
                        "active": v == self.activeVersion,
                    }
                    for v in self.models
                ],
                None,
            )
        if method == "POST" and path == "/rank":
            return 200, self.newJob("rank"), None
        if method == "POST" and path == "/adapt":
            if not self.labels:
                return 409, {"detail": "no clinician labels yet"}, None
            return 200, self.newJob("adapt"), None
        match = re.fullmatch(r"/models/([^/]+)/activate", path)
        if method == "POST" and match:
            self.activeVersion = match.group(1)
            return 200, {"active_model_version": self.activeVersion}, None
        match = re.fullmatch(r"/cases/([^/]+)/(image|infer|label)", path)
        if match:
            caseId, what = match.groups()
            if what == "image" and method == "GET":
                return 200, niftiBytes(self.image), None
            if what == "infer" and method == "POST":
                return 200, niftiBytes(self.prediction), {"X-Model-Version": self.activeVersion}
            if what == "label" and method == "PUT":
                self.labels[caseId] = readNifti(self.uploadedFile(body, headers))
                values = sorted(int(v) for v in np.unique(self.labels[caseId]))
                return 200, {"case_id": caseId, "tag": "final", "label_values": values}, None
        return 404, {"detail": f"no route {method} {path}"}, None

    @staticmethod
    def uploadedFile(body, headers):
        boundary = headers["Content-Type"].split("boundary=")[1].encode()
        for part in body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            if b'name="file"' in head:
                return content[: -len(b"\r\n")] if content.endswith(b"\r\n") else content
        raise ValueError("no file part")

    def _handlerClass(self):
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                worker.requests.append((method, self.path))
                status, payload, extra = worker.route(method, self.path, body, self.headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

        return Handler
