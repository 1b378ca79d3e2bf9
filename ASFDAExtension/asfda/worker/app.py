"""The FastAPI application: recovery at start, the job queue, middleware, error replies, routes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import asfda
from asfda.core.errors import (
    AsfdaError,
    CorruptImage,
    DuplicateCase,
    EmptyLabel,
    GeometryMismatch,
    InvalidCaseId,
    InvalidMask,
    ModelNotFound,
    UnknownCase,
    UnknownLabelValues,
)
from asfda.data.datastore import Datastore
from asfda.data.dicomweb.errors import CacheFull, PacsUnavailable
from asfda.data.effort import InvalidEffort
from asfda.data.label_revisions import RevisionConflict
from asfda.data.leases import LeaseBook, LeaseConflict
from asfda.data.writer_lock import lock_datastore
from asfda.loop import LoopSession, SessionSettings
from asfda.scoring import prune_signal_cache
from asfda.worker import (
    routes_annotators,
    routes_cases,
    routes_dicomweb,
    routes_jobs,
    routes_models,
    routes_report,
    routes_revisions,
)
from asfda.worker.auth import BearerTokenMiddleware
from asfda.worker.context import Worker
from asfda.worker.heavy import HeavySlots
from asfda.worker.jobstore import JobStore, one_line
from asfda.worker.limits import BodySizeLimitMiddleware
from asfda.worker.origin import HostOriginMiddleware
from asfda.worker.recovery import recover
from asfda.worker.roles import check_every_route_has_a_role, require_role
from asfda.worker.runner import JobRunner
from asfda.worker.settings import WorkerSettings
from asfda.worker.tokens import ensure_datastore_token

log = logging.getLogger("asfda.worker")

# Engine errors are the user's to fix; each maps to the status a client can act on.
STATUS_OF = [
    (InvalidCaseId, 400),
    (UnknownCase, 404),
    (DuplicateCase, 409),
    (ModelNotFound, 404),
    ((LeaseConflict, RevisionConflict), 409),
    (PacsUnavailable, 503),
    (CacheFull, 507),
    ((CorruptImage, GeometryMismatch, UnknownLabelValues, EmptyLabel, InvalidMask, InvalidEffort), 422),
    (AsfdaError, 400),
]


# Every route of the worker; each (method, path) has its role in asfda.worker.roles.ROUTE_ROLES.
ROUTERS = tuple(
    m.router
    for m in (
        routes_models,
        routes_report,
        routes_cases,
        routes_revisions,
        routes_annotators,
        routes_dicomweb,
        routes_jobs,
    )
)


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


def check_hand_placed_labels(store: Datastore) -> None:
    """At start, what every rank and adapt checks too: labels put into labels/final/ by hand are validated
    and recorded, a bad one is logged in one line (the worker still starts; rank and adapt refuse it), and
    case ids that two images name are logged as skipped."""
    session = LoopSession(store, SessionSettings(device="cpu"))  # no GPU in the API process
    try:
        for case_id in session.preflight():
            log.info("checked and recorded label found in labels/final/ for case %s", case_id)
    except AsfdaError as exc:
        log.error("%s (rank and adapt refuse until it is fixed)", one_line(exc))
    for case_id, reason in session.duplicates.items():
        log.warning("skipped case %s: %s", case_id, reason)


def create_app(settings: WorkerSettings) -> FastAPI:
    """The worker's app over `settings.datastore`: locks the datastore, recovers, creates DIR/worker-token.

    Args:
        settings: checked or not (checked here).

    Returns:
        The app; its lifespan starts and stops the job runner.
    """
    settings.check()
    settings.datastore.mkdir(parents=True, exist_ok=True)
    lock = lock_datastore(settings.datastore, f"the asfda worker on {settings.host}:{settings.port}")
    datastore_token = ensure_datastore_token(settings.datastore)
    store = Datastore(settings.datastore)
    jobs = JobStore(store.root / "asfda.db")
    recover(store, jobs)
    check_hand_placed_labels(store)
    prune_signal_cache(store)  # entries of versions rolled away from since the last start
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
        dependencies=[Depends(require_role)],
    )
    app.state.heavy = HeavySlots(settings.max_heavy_requests)
    app.state.worker = Worker(settings, store, jobs, runner, LeaseBook(store.root / "asfda.db", root=store.root))
    app.add_exception_handler(AsfdaError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    check_every_route_has_a_role(ROUTERS)
    for router in ROUTERS:
        app.include_router(router)
    # Middleware added last runs first: Host/Origin, then the token, then the body limit.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    admins = [t for t in (datastore_token, settings.token) if t]
    app.add_middleware(BearerTokenMiddleware, admin_tokens=admins, annotator_tokens=settings.annotator_tokens)
    app.add_middleware(HostOriginMiddleware, allowed_hosts=settings.allowed_hosts())
    return app
