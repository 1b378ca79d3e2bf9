"""A scripted ASFDA worker over real HTTP on 127.0.0.1, answering the routes the module calls.

Replies follow docs/worker-api.md in shape; behaviour is scripted (a refusal for Adapt before any label,
jobs that succeed at once) so the widget tests stay fast and deterministic. Leases follow docs/worker.md
("Several annotators"): one holder per case, 409 naming the holder, ended by release or submission;
``leasesSupported = False`` answers their routes as a worker older than leases does (404 "Not Found").
"""

import gzip
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nibabel as nib
import numpy as np

LABELS = {"background": 0, "liver": 1, "tumor": 2}
SHAPE = (10, 9, 8)
EXPIRES = "2030-01-01T00:00:00+00:00"


AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def niftiBytes(array, affine=AFFINE):
    image = nib.Nifti1Image(array, affine)
    return gzip.compress(image.to_bytes())


def readNifti(data):
    """An uploaded label, NIfTI or NRRD as the real worker accepts, in nibabel's (i, j, k) order."""
    if data.startswith(b"NRRD"):
        import io

        import nrrd

        handle = io.BytesIO(data)
        header = nrrd.read_header(handle)
        return np.asarray(nrrd.read_data(header, handle))
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(data)).dataobj)


class FakeWorker:
    def __init__(self, datastore="/data/store"):
        self.datastore = str(datastore)
        self.activeVersion = "v0001"
        self.models = ["v0001"]
        self.cases = ["case-a", "case-b"]
        self.labels = {}  # caseId -> uploaded array
        self.noStructure = set()  # cases submitted with the "no structure" verdict
        self.efforts = {}  # caseId -> the effort record (JSON) sent with its last label upload
        self.masks = {}  # caseId -> uploaded annotated-region mask, (i, j, k) as labels
        self.requestedSlices = {}  # caseId -> a sparse rank's {"axis", "indices", "rule"}
        self.rankBodies = []  # the JSON of every POST /rank
        self.affine = AFFINE  # of every volume served; a left-handed one makes Slicer flip an axis on loading
        self.jobs = []
        self.requests = []
        self.failPaths = set()  # paths answered with HTTP 500
        self.busyPaths = {}  # path -> how many more requests to refuse with 503 and Retry-After (slots all taken)
        self.retryAfter = "0"
        # GET /report (per adaptation round: cases, slices, minutes); None answers as a worker without the route.
        self.report = {"baseline": "v0001", "rounds": []}
        self.annotatorHeaders = []  # (method, path, X-Annotator as decoded) of every request
        self.leases = {}  # caseId -> annotator
        self.revisions = {}  # caseId -> (revision, author) of the current label, as the real worker keeps them
        self.labelHeaders = []  # (If-Match, If-None-Match, X-ASFDA-Client) of every label upload
        self.revisionsSupported = True  # False: a worker older than label revisions (no fields, no checks)
        self.leasesSupported = True
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
            **({"leased_by": self.leases[caseId], "lease_expires_at": EXPIRES} if caseId in self.leases else {}),
            **({"revision": self.revisions[caseId][0]} if caseId in self.revisions else {}),
            "requested_slices": self.requestedSlices.get(caseId),
        }

    def lease(self, method, path, annotator):
        """The lease routes; None when ``path`` is not one of them."""
        match = re.fullmatch(r"/cases/([^/]+)/lease", path)
        if not (path == "/next" or match):
            return None
        if not self.leasesSupported:
            return 404, {"detail": "Not Found"}, None
        if not annotator:
            return 400, {"detail": "name the annotator"}, None
        if path == "/next" and method == "POST":
            mine = [c for c, who in self.leases.items() if who == annotator]
            free = [c for c in self.cases if c not in self.labels and c not in self.leases]
            caseId = (mine + free or [None])[0]
            return (200, None, None) if caseId is None else self.grant(caseId, annotator)
        caseId = match.group(1)
        holder = self.leases.get(caseId)
        if holder not in (None, annotator):
            return 409, {"detail": f"case {caseId!r} is leased to {holder} until {EXPIRES}"}, None
        if method == "POST":
            return self.grant(caseId, annotator)
        if method == "DELETE":
            return 200, {"case_id": caseId, "released": self.leases.pop(caseId, None) is not None}, None
        return 405, {"detail": "Method Not Allowed"}, None

    def grant(self, caseId, annotator):
        self.leases[caseId] = annotator
        revision, author = self.revisions.get(caseId, (None, None))
        reply = {"case_id": caseId, "annotator": annotator, "leased_at": "", "expires_at": EXPIRES}
        if not self.revisionsSupported:
            return 200, reply, None
        return 200, {**reply, "revision": revision, "revision_author": author}, None

    def revisionConflict(self, caseId, annotator, headers):
        """The real worker's base-revision check (If-Match / If-None-Match); None when the submit may go on."""
        current = self.revisions.get(caseId)
        ifMatch, ifNone = headers.get("If-Match"), headers.get("If-None-Match")
        if ifMatch is not None:
            opened = ifMatch.strip('"')
        elif ifNone == "*":
            opened = ""
        else:
            opened = "" if not current else (current[0] if current[1] == annotator else None)
        if (current[0] if current else "") == opened:
            return None
        now = f"revision {current[0]} by {current[1]}" if current else "no label"
        return f"case {caseId!r} changed since {annotator} opened it from {opened or 'no label'}: it now has {now}"

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
        if self.busyPaths.get(path.split("?")[0], 0) > 0:
            self.busyPaths[path.split("?")[0]] -= 1
            return 503, {"detail": "the worker is busy with 1 uploads or downloads"}, {"Retry-After": self.retryAfter}
        if method == "GET" and path == "/report":
            return (404, {"detail": "Not Found"}, None) if self.report is None else (200, self.report, None)
        annotator = urllib.parse.unquote(headers.get("X-Annotator") or "")
        leaseReply = self.lease(method, path.split("?")[0], annotator)
        if leaseReply is not None:
            return leaseReply
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
            self.rankBodies.append(json.loads(body or b"{}"))
            return 200, self.newJob("rank"), None
        if method == "POST" and path == "/adapt":
            if not self.labels:
                return 409, {"detail": "no clinician labels yet"}, None
            return 200, self.newJob("adapt"), None
        match = re.fullmatch(r"/jobs/([^/]+)/cancel", path)
        if method == "POST" and match:
            job = next((j for j in self.jobs if j["job_id"] == match.group(1)), None)
            if job is None:
                return 404, {"detail": f"job {match.group(1)!r} does not exist"}, None
            if job["state"] in ("queued", "running"):
                job["state"] = "cancelled"
            return 200, job, None
        match = re.fullmatch(r"/models/([^/]+)/activate", path)
        if method == "POST" and match:
            self.activeVersion = match.group(1)
            return 200, {"active_model_version": self.activeVersion}, None
        match = re.fullmatch(r"/cases/([^/]+)/revisions/([^/]+)", path)
        if method == "GET" and match:
            caseId, revision = match.groups()
            if self.revisions.get(caseId, (None,))[0] != revision:
                return 404, {"detail": f"case {caseId!r} has no label revision {revision!r}"}, None
            return 200, niftiBytes(self.labels[caseId], self.affine), {"ETag": f'"{revision}"'}
        path, _, query = path.partition("?")
        match = re.fullmatch(r"/cases/([^/]+)/(image|infer|label)", path)
        if match:
            caseId, what = match.groups()
            if what == "image" and method == "GET":
                return 200, niftiBytes(self.image, self.affine), None
            if what == "infer" and method == "POST":
                return 200, niftiBytes(self.prediction, self.affine), {"X-Model-Version": self.activeVersion}
            if what == "label" and method == "PUT":
                self.labelHeaders.append(
                    (headers.get("If-Match"), headers.get("If-None-Match"), headers.get("X-ASFDA-Client"))
                )
                if self.leases.get(caseId, annotator) != annotator:
                    return 409, {"detail": f"case {caseId!r} is leased to {self.leases[caseId]}"}, None
                conflict = self.revisionsSupported and self.revisionConflict(caseId, annotator, headers)
                if conflict:
                    return 409, {"detail": conflict}, None
                self.leases.pop(caseId, None)
                self.labels[caseId] = readNifti(self.uploadedFile(body, headers))
                effort = self.uploadedField(body, headers, "effort")
                if effort is not None:
                    self.efforts[caseId] = json.loads(effort)
                mask = self.uploadedFile(body, headers, "mask")
                if mask is not None:
                    self.masks[caseId] = readNifti(mask)
                else:
                    self.masks.pop(caseId, None)
                self.revisions[caseId] = (f"r{int((self.revisions.get(caseId) or ('r0',))[0][1:]) + 1:04d}", annotator)
                values = sorted(int(v) for v in np.unique(self.labels[caseId]))
                if "no_structure=true" in query.split("&"):
                    self.noStructure.add(caseId)
                reply = {"case_id": caseId, "tag": "final", "label_values": values}
                return 200, {**reply, "revision": self.revisions[caseId][0]}, None
        return 404, {"detail": f"no route {method} {path}"}, None

    @staticmethod
    def uploadedField(body, headers, name):
        boundary = headers["Content-Type"].split("boundary=")[1].encode()
        for part in body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            if f'name="{name}"'.encode() in head:
                return content[: -len(b"\r\n")] if content.endswith(b"\r\n") else content
        return None

    @staticmethod
    def uploadedFile(body, headers, name="file"):
        """The multipart part ``name``: the label (required) or the sparse label's ``mask`` (None without one)."""
        boundary = headers["Content-Type"].split("boundary=")[1].encode()
        for part in body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            if f'name="{name}"'.encode() in head:
                return content[: -len(b"\r\n")] if content.endswith(b"\r\n") else content
        if name == "file":
            raise ValueError("no file part")
        return None

    def _handlerClass(self):
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                worker.requests.append((method, self.path))
                worker.annotatorHeaders.append(
                    (method, self.path, urllib.parse.unquote(self.headers.get("X-Annotator", "")))
                )
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

            def do_DELETE(self):
                self._serve("DELETE")

        return Handler
