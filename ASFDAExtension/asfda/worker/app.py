"""The FastAPI application: recovery at start, the job queue, middleware, error replies, routes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import asfda
from asfda.core.errors import (
    AsfdaError,
    CorruptImage,
    EmptyLabel,
    GeometryMismatch,
    InvalidCaseId,
    ModelNotFound,
    UnknownCase,
    UnknownLabelValues,
)
from asfda.data.datastore import Datastore
from asfda.data.dicomweb.errors import CacheFull, PacsUnavailable
from asfda.data.leases import LeaseBook, LeaseConflict
from asfda.worker import routes_annotators, routes_cases, routes_dicomweb, routes_jobs, routes_models
from asfda.worker.auth import BearerTokenMiddleware
from asfda.worker.context import Worker
from asfda.worker.jobstore import JobStore, one_line
from asfda.worker.limits import BodySizeLimitMiddleware
from asfda.worker.recovery import lock_datastore, recover
from asfda.worker.runner import JobRunner
from asfda.worker.settings import WorkerSettings

log = logging.getLogger("asfda.worker")

# Engine errors are the user's to fix; each maps to the status a client can act on.
STATUS_OF = [
    (InvalidCaseId, 400),
    (UnknownCase, 404),
    (ModelNotFound, 404),
    (LeaseConflict, 409),
    (PacsUnavailable, 503),
    (CacheFull, 507),
    ((CorruptImage, GeometryMismatch, UnknownLabelValues, EmptyLabel), 422),
    (AsfdaError, 400),
]


def _engine_error(_request: Request, exc: AsfdaError) -> JSONResponse:
    status = next(code for kinds, code in STATUS_OF if isinstance(exc, kinds))
    return JSONResponse({"detail": one_line(str(exc) or type(exc).__name__)}, status_code=status)


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # One line, "where: what", instead of FastAPI's list of dicts.
    parts = []
    for error in exc.errors():
        where = ".".join(str(x) for x in error.get("loc", ()) if x not in ("body",))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return JSONResponse({"detail": one_line("; ".join(parts) or "invalid request")}, status_code=422)


def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"detail": one_line(f"internal error: {type(exc).__name__}: {exc}")}, status_code=500)


def create_app(settings: WorkerSettings) -> FastAPI:
    settings.check()
    settings.datastore.mkdir(parents=True, exist_ok=True)
    lock = lock_datastore(settings.datastore)
    store = Datastore(settings.datastore)
    jobs = JobStore(store.root / "asfda.db")
    recover(store, jobs)
    runner = JobRunner(store.root, jobs, store.models, settings.device)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runner.start()
        write_back = asyncio.create_task(routes_dicomweb.retry_forever(_app.state.worker))
        try:
            yield
        finally:
            write_back.cancel()
            runner.stop()
            lock.close()

    app = FastAPI(
        title="ASFDA worker",
        version=asfda.__version__,
        description="Rank, label and adapt over one datastore; see docs/worker-api.md.",
        lifespan=lifespan,
    )
    app.state.worker = Worker(settings, store, jobs, runner, LeaseBook(store.root / "asfda.db"))
    app.add_exception_handler(AsfdaError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for module in (routes_models, routes_cases, routes_annotators, routes_dicomweb, routes_jobs):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.token or settings.annotator_tokens:  # added last: runs first
        app.add_middleware(BearerTokenMiddleware, token=settings.token, annotator_tokens=settings.annotator_tokens)
    return app
