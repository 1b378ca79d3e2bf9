"""The worker's OpenAPI schema fuzzed with schemathesis (issue 19): no 500, no hang, every refusal a 4xx
with a one-line reason. Seeded (derandomize) and bounded, against an in-process app on a tiny datastore;
the job runner is not started, so a queued job never runs (interactive /infer, which waits for its job,
is left out).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from asfda.worker.app import create_app  # noqa: E402
from asfda.worker.sample import make_sample_datastore  # noqa: E402
from asfda.worker.settings import WorkerSettings  # noqa: E402
from asfda.worker.tokens import datastore_token_path, read_token_file  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

EXAMPLES = 15


def _worker_app():
    # Built at import: schemathesis parametrizes the test from the schema. The folder goes with the process.
    root = Path(tempfile.mkdtemp(prefix="asfda-fuzz-")) / "store"
    atexit.register(shutil.rmtree, root.parent, True)
    make_sample_datastore(root, n_cases=2, size=8)
    # Port 80: a client of a loopback worker on port 80 sends `Host: localhost`.
    return create_app(WorkerSettings(datastore=root, port=80, max_upload_bytes=1 << 20)), root


APP, ROOT = _worker_app()


async def without_lifespan(scope, receive, send):
    """The app without its lifespan: the job runner stays stopped (schemathesis opens a client per call)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    await APP(scope, receive, send)


AUTH = {"Authorization": f"Bearer {read_token_file(datastore_token_path(ROOT))}", "Host": "localhost"}
schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan, headers=AUTH).exclude(
    path_regex=r".*/infer$"
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case):
    reply = case.call(headers=AUTH)
    assert reply.status_code < 500, (case.method, case.path, reply.status_code, reply.text[:300])
    if reply.status_code >= 400:
        detail = reply.json().get("detail")
        assert isinstance(detail, str) and detail and "\n" not in detail, (case.method, case.path, reply.text[:300])
