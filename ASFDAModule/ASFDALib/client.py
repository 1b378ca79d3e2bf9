"""HTTP client for the ASFDA worker (see docs/worker-api.md).

Standard library only, because it runs inside Slicer's Python before any dependency is installed.
Every request carries a timeout so a slow or dead worker can never hang the caller forever, and
every failure becomes a ``WorkerError`` with a one-line message a clinician can act on.
"""

import email.utils
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Sent with every request, so the worker's audit records a label as coming from Slicer.
CLIENT_HEADER = "slicer/asfda-module"

# Short calls (status, lists) must fail fast; inference and uploads legitimately take longer.
DEFAULT_TIMEOUT_S = 10.0
LONG_TIMEOUT_S = 600.0

# A worker whose upload/download slots are all taken answers 503 with Retry-After (it frees a slot once a
# reply is sent, so back-to-back uploads can meet one): wait as told, a few times, never long.
RETRIES_ON_BUSY = 3
MAX_RETRY_WAIT_S = 10.0
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE")  # safe or idempotent: sending again changes nothing more
CONDITIONAL_HEADERS = ("If-Match", "If-None-Match")  # a repeated conditional upload is refused, never doubled


class WorkerError(Exception):
    """A worker request failed; ``str(error)`` is a readable one-line reason."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def _detailText(detail):
    # FastAPI sends a string for HTTPException and a list of dicts for validation errors.
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                msg = item.get("msg", "")
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)


def _oneLine(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def retryAfterSeconds(value, now=None):
    """Seconds a ``Retry-After`` header asks to wait (delay seconds or an HTTP date); None when unreadable."""
    text = str(value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def mayRetry(method, headers):
    """A request that may be sent again after a 503: safe or idempotent, or an upload guarded by its revision
    (If-Match / If-None-Match), which the worker refuses with 409 rather than store twice."""
    return method in SAFE_METHODS or any(name in (headers or {}) for name in CONDITIONAL_HEADERS)


def routeUnknown(error):
    """True when the worker predates a route: its router does not know it at all (404 "Not Found", or 405)."""
    if not isinstance(error, WorkerError):
        return False
    return error.status == 405 or (error.status == 404 and str(error).endswith("HTTP 404: Not Found"))


def checkCaseId(caseId):
    """Reject ids the worker would refuse, before they reach a URL."""
    if not isinstance(caseId, str) or not CASE_ID_PATTERN.match(caseId) or ".." in caseId:
        raise WorkerError(f"Invalid case id {caseId!r}")
    return caseId


class WorkerClient:
    """One worker endpoint; cheap to create, holds no connection."""

    def __init__(self, url, token="", timeout=DEFAULT_TIMEOUT_S, longTimeout=LONG_TIMEOUT_S, annotator=""):
        url = (url or "").strip()
        if not url:
            raise WorkerError("No worker URL given")
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.token = (token or "").strip()
        self.timeout = timeout
        self.longTimeout = longTimeout
        # Who is working: sent with every request (percent-encoded UTF-8, as HTTP headers are latin-1).
        self.annotator = " ".join((annotator or "").split())
        self.retriesOnBusy = RETRIES_ON_BUSY
        self.sleep = time.sleep  # replaced in tests

    # -- transport -------------------------------------------------------------------------

    def _open(self, method, path, data=None, headers=None, timeout=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.annotator:
            headers["X-Annotator"] = urllib.parse.quote(self.annotator)
        headers["X-ASFDA-Client"] = CLIENT_HEADER
        where = f"{method} {path.split('?')[0]}"
        limit = self.timeout if timeout is None else timeout
        # Never on the GUI (main) thread: waiting there would freeze Slicer; its 503 is reported at once.
        retries = self.retriesOnBusy if threading.current_thread() is not threading.main_thread() else 0
        for attempt in range(retries + 1):
            request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                return urllib.request.urlopen(request, timeout=limit)
            except urllib.error.HTTPError as error:
                wait = retryAfterSeconds(error.headers.get("Retry-After")) if error.code == 503 else None
                if wait is None or attempt == retries or not mayRetry(method, headers):
                    raise self._httpError(where, error) from None
                error.close()
            except OSError as error:  # no HTTP answer: URLError, timeouts, refused or reset connections
                raise self._transportError(where, limit, error) from None
            self.sleep(min(wait, MAX_RETRY_WAIT_S))

    def _transportError(self, where, limit, error):
        """A ``WorkerError`` for a request that got no HTTP answer (timeout, refused, reset)."""
        if isinstance(error, urllib.error.URLError):
            reason = error.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                return WorkerError(f"Worker at {self.url} did not answer {where} within {limit:g} s")
            return WorkerError(f"Cannot reach worker at {self.url} ({where}): {_oneLine(reason)}")
        if isinstance(error, (socket.timeout, TimeoutError)):
            return WorkerError(f"Worker at {self.url} did not answer {where} within {limit:g} s")
        return WorkerError(f"Cannot reach worker at {self.url} ({where}): {_oneLine(error)}")

    def _httpError(self, where, error):
        try:
            body = error.read().decode("utf-8", "replace")
        except Exception:
            body = ""
        reason = ""
        try:
            payload = json.loads(body)
            reason = _detailText(payload.get("detail", payload)) if isinstance(payload, dict) else body
        except ValueError:
            reason = body
        reason = _oneLine(reason or error.reason or "")
        hint = ""
        if error.code == 401:
            hint = " (check the worker token)"
        elif error.code == 413:
            hint = " (file larger than the worker accepts)"
        message = f"Worker {where} failed: HTTP {error.code}{hint}"
        if reason:
            message += f": {reason}"
        return WorkerError(message, status=error.code)

    def _readAll(self, response, where, limit):
        try:
            with response:
                return response.read()
        except (socket.timeout, TimeoutError):
            raise WorkerError(f"Worker at {self.url} did not finish {where} within {limit:g} s") from None

    def _json(self, method, path, body=None, timeout=None):
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        response = self._open(method, path, data, headers, timeout)
        raw = self._readAll(response, f"{method} {path}", timeout or self.timeout)
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise WorkerError(f"Worker {method} {path} returned something that is not JSON") from None

    def _download(self, method, path, targetPath, timeout):
        """Stream a file reply to ``targetPath`` atomically; return the response headers."""
        response = self._open(method, path, b"" if method == "POST" else None, None, timeout)
        tmpPath = f"{targetPath}.part-{uuid.uuid4().hex[:8]}"
        try:
            with response, open(tmpPath, "wb") as out:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                headers = dict(response.headers.items())
            os.replace(tmpPath, targetPath)
        except (socket.timeout, TimeoutError):
            where = f"{method} {path}"
            raise WorkerError(f"Worker at {self.url} did not finish {where} within {timeout:g} s") from None
        finally:
            if os.path.exists(tmpPath):
                os.remove(tmpPath)
        return headers

    # -- endpoints -------------------------------------------------------------------------

    def health(self, timeout=None):
        return self._json("GET", "/health", timeout=timeout)

    def info(self):
        return self._json("GET", "/info")

    def cases(self):
        return self._json("GET", "/cases")

    def worklist(self, k=None):
        query = f"?k={int(k)}" if k is not None else ""
        return self._json("GET", "/worklist" + query)

    def rank(self, budgetK, strategy="asfda", slicesPerVolume=0, sliceAxis="auto"):
        """Queue a rank; slicesPerVolume > 0 asks for that many slices of each pick (sparse annotation)."""
        body = {"strategy": strategy, "budget_k": int(budgetK)}
        if slicesPerVolume:  # left out otherwise, so a worker from before sparse annotation still accepts it
            body["slices_per_volume"] = int(slicesPerVolume)
            body["slice_axis"] = sliceAxis if sliceAxis == "auto" else int(sliceAxis)
        return self._json("POST", "/rank", body)

    def downloadImage(self, caseId, targetPath):
        path = f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/image"
        return self._download("GET", path, targetPath, self.longTimeout)

    def infer(self, caseId, targetPath):
        """Run inference at top priority; return the model version that produced the file."""
        path = f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/infer"
        headers = self._download("POST", path, targetPath, self.longTimeout)
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("x-model-version")

    def downloadPrediction(self, caseId, targetPath):
        path = f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/prediction"
        return self._download("GET", path, targetPath, self.longTimeout)

    @staticmethod
    def _filePart(boundary, field, filePath):
        with open(filePath, "rb") as f:
            content = f.read()
        fileName = os.path.basename(filePath).replace('"', "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{fileName}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        return [head, content, b"\r\n"]

    def uploadLabel(self, caseId, filePath, author="", revision=None, overwrite=False, maskPath=None,
                    noStructure=False, effort=None):
        """Submit a label as the case's next revision.

        ``revision``: the revision the label was opened from (``If-Match``), ``""`` when the case had no
        label (``If-None-Match: *``), None when unknown (a worker older than revisions). The worker answers
        409 naming who changed the case since; ``overwrite`` replaces the current revision regardless.
        ``maskPath``: a sparse label's mask of annotated voxels (uint8 0/1, the image's grid).
        ``noStructure``: the clinician's verdict that the case shows no structure (an all-background label).
        ``effort``: the effort record (ASFDALib/effort.py), sent as the JSON form field ``effort``.
        """
        author = author or self.annotator
        path = f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/label"
        query = [name for name, on in (("overwrite=true", overwrite), ("no_structure=true", noStructure)) if on]
        if query:
            path += "?" + "&".join(query)
        boundary = "asfda-" + uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="author"\r\n\r\n{author}\r\n'.encode()]
        parts += self._filePart(boundary, "file", filePath)
        if maskPath:
            parts += self._filePart(boundary, "mask", maskPath)
        if effort is not None:
            text = json.dumps(effort)
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="effort"\r\n\r\n{text}\r\n'.encode())
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": "application/json"}
        if revision == "":
            headers["If-None-Match"] = "*"
        elif revision is not None:
            headers["If-Match"] = f'"{revision}"'
        response = self._open("PUT", path, b"".join(parts), headers, self.longTimeout)
        raw = self._readAll(response, f"PUT {path}", self.longTimeout)
        return json.loads(raw.decode("utf-8")) if raw else None

    def adapt(self, steps=None, usePseudoLabels=True):
        body = {"use_pseudo_labels": bool(usePseudoLabels)}
        if steps:
            body["steps"] = int(steps)
        return self._json("POST", "/adapt", body)

    def jobs(self):
        return self._json("GET", "/jobs")

    def job(self, jobId):
        return self._json("GET", f"/jobs/{urllib.parse.quote(str(jobId))}")

    def cancelJob(self, jobId):
        return self._json("POST", f"/jobs/{urllib.parse.quote(str(jobId))}/cancel")

    def models(self):
        return self._json("GET", "/models")

    def activateModel(self, version):
        return self._json("POST", f"/models/{urllib.parse.quote(str(version), safe='')}/activate")

    def report(self):
        """Per adaptation round: the cases, annotated slices and annotator minutes it cost (``GET /report``)."""
        return self._json("GET", "/report")

    # -- several annotators (leases, audit) ---------------------------------------------------

    def nextCase(self, leaseSeconds=None):
        """Lease this annotator's next case (the one already held, else the best-ranked free one); None if none."""
        query = f"?lease_s={float(leaseSeconds):g}" if leaseSeconds else ""
        return self._json("POST", "/next" + query)

    def leaseCase(self, caseId, leaseSeconds=None):
        """Lease (or renew) one case; WorkerError with status 409 names the holder when someone else has it."""
        query = f"?lease_s={float(leaseSeconds):g}" if leaseSeconds else ""
        return self._json("POST", f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/lease" + query)

    def releaseCase(self, caseId):
        return self._json("DELETE", f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/lease")

    def leases(self):
        return self._json("GET", "/leases")

    def downloadRevision(self, caseId, revision, targetPath):
        """One accepted label of the case (e.g. the current one a lease reported) as NIfTI."""
        revision = urllib.parse.quote(str(revision), safe="")
        path = f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/revisions/{revision}"
        return self._download("GET", path, targetPath, self.longTimeout)

    def revisions(self, caseId):
        """Every accepted label of the case (revision, author, time, model version, source), oldest first."""
        return self._json("GET", f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/revisions")

    def audit(self, caseId):
        return self._json("GET", f"/cases/{urllib.parse.quote(checkCaseId(caseId))}/audit")
