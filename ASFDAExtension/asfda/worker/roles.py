"""Who may call which route: one table, checked on every request by a FastAPI dependency.

An annotator reads the worklist and cases, leases, submits and releases. The administrator also
ranks, adapts, cancels, activates a model version (rollback), drives the PACS and force-releases
another annotator's lease (a query flag of the release route, checked there). A route missing from
the table stops the worker at start (`check_every_route_has_a_role`), so none is added unguarded.
"""

from __future__ import annotations

import enum
from typing import Dict, Iterable, List, Tuple

from fastapi import APIRouter, HTTPException, Request
from fastapi.routing import APIRoute


class Role(enum.IntEnum):
    OPEN = 0  # no token: liveness only
    ANNOTATOR = 1
    ADMIN = 2


CASE = "/cases/{case_id:path}"
ROUTE_ROLES: Dict[Tuple[str, str], Role] = {
    ("GET", "/health"): Role.OPEN,
    ("GET", "/info"): Role.ANNOTATOR,
    ("GET", "/models"): Role.ANNOTATOR,
    ("POST", "/models/{version}/activate"): Role.ADMIN,
    ("GET", "/report"): Role.ANNOTATOR,  # per-round cases, slices, minutes: what /cases shows, summed
    ("GET", "/cases"): Role.ANNOTATOR,
    ("GET", "/worklist"): Role.ANNOTATOR,
    ("GET", CASE + "/image"): Role.ANNOTATOR,
    ("GET", CASE + "/prediction"): Role.ANNOTATOR,
    ("POST", CASE + "/infer"): Role.ANNOTATOR,  # the draft an annotator corrects
    ("PUT", CASE + "/label"): Role.ANNOTATOR,
    ("POST", "/next"): Role.ANNOTATOR,
    ("GET", "/leases"): Role.ANNOTATOR,
    ("POST", CASE + "/lease"): Role.ANNOTATOR,
    ("DELETE", CASE + "/lease"): Role.ANNOTATOR,  # ?force=true needs Role.ADMIN (routes_annotators)
    ("GET", CASE + "/audit"): Role.ANNOTATOR,
    ("GET", CASE + "/revisions"): Role.ANNOTATOR,
    ("GET", CASE + "/revisions/{revision}"): Role.ANNOTATOR,
    ("GET", "/dicomweb"): Role.ANNOTATOR,
    ("POST", "/dicomweb/refresh"): Role.ADMIN,
    ("POST", "/dicomweb/retry"): Role.ADMIN,
    ("POST", "/rank"): Role.ADMIN,
    ("POST", "/adapt"): Role.ADMIN,
    ("GET", "/jobs"): Role.ANNOTATOR,  # progress of the running job, shown to everyone
    ("GET", "/jobs/{job_id}"): Role.ANNOTATOR,
    ("POST", "/jobs/{job_id}/cancel"): Role.ADMIN,
}


def request_role(request: Request) -> Role:
    """The role of the token that authenticated this request (set by BearerTokenMiddleware)."""
    return request.scope.get("state", {}).get("role", Role.OPEN)


def route_keys(routers: Iterable[APIRouter]) -> List[Tuple[str, str]]:
    """(method, path) of every API route of the routers the app includes."""
    return sorted(
        (method, route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    )


def check_every_route_has_a_role(routers: Iterable[APIRouter]) -> None:
    """Raise naming each route that is missing from ROUTE_ROLES (the worker then does not start)."""
    missing = [f"{m} {p}" for m, p in route_keys(routers) if (m, p) not in ROUTE_ROLES]
    if missing:
        raise RuntimeError(f"routes without a role in asfda.worker.roles.ROUTE_ROLES: {', '.join(missing)}")


def require_role(request: Request) -> None:
    """App-wide dependency: 403 unless the caller's token may use this route."""
    route = request.scope.get("route")
    needed = ROUTE_ROLES.get((request.method, getattr(route, "path", "")), Role.ADMIN)  # unknown: strictest
    role = request_role(request)
    if role < needed:
        who = "an annotator's" if role == Role.ANNOTATOR else "missing"
        raise HTTPException(403, f"{request.method} {route.path} needs the administrator token; this one is {who}")
