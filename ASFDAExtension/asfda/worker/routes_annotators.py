"""Several annotators on one worker: "next case for me", leases on named cases, release, audit."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Optional

from fastapi import APIRouter, HTTPException, Query, Request

from asfda.data.leases import DEFAULT_LEASE_S, Lease
from asfda.worker import worklist as worklist_queries
from asfda.worker.annotators import require_annotator
from asfda.worker.context import Worker, WorkerDep
from asfda.worker.roles import Role, request_role
from asfda.worker.schemas import AuditEvent, LeaseReply

router = APIRouter(tags=["annotators"])
CASE = "/cases/{case_id:path}"
LeaseSeconds = Annotated[
    float, Query(ge=1, le=7 * 24 * 3600, description=f"lease length in seconds [{DEFAULT_LEASE_S}]")
]


def _annotator(request: Request, worker: Worker) -> str:
    return require_annotator(request, worker.settings.loopback, bool(worker.settings.annotator_tokens))


def _reply(worker: Worker, lease: Lease) -> Dict[str, Any]:
    ranks = {item["case_id"]: item.get("rank") for item in worklist_queries.worklist(worker.store, None, None)["items"]}
    return {**vars(lease), "rank": ranks.get(lease.case_id), "status": worker.store.case_status(lease.case_id)}


@router.post("/next", response_model=Optional[LeaseReply])
def next_case(request: Request, worker: WorkerDep, lease_s: LeaseSeconds = DEFAULT_LEASE_S) -> Optional[Dict]:
    """Lease the annotator's next case: the one they already hold (renewed), else the best-ranked case
    that is neither labelled nor leased to someone else. `null` when none is left."""
    annotator = _annotator(request, worker)
    lease = worker.leases.take_next(annotator, worklist_queries.next_candidates(worker.store), lease_s)
    return _reply(worker, lease) if lease else None


@router.get("/leases", response_model=List[LeaseReply])
def leases(worker: WorkerDep) -> List[Dict[str, Any]]:
    return [vars(lease) for lease in worker.leases.leases().values()]


@router.post(CASE + "/lease", response_model=LeaseReply)
def take_lease(case_id: str, request: Request, worker: WorkerDep, lease_s: LeaseSeconds = DEFAULT_LEASE_S) -> Dict:
    """Lease (or renew) one named case, e.g. a row picked in the worklist; 409 when another holds it."""
    worker.known_case(case_id)
    annotator = _annotator(request, worker)
    return _reply(worker, worker.leases.take(case_id, annotator, lease_s))


@router.delete(CASE + "/lease")
def release_lease(
    case_id: str,
    request: Request,
    worker: WorkerDep,
    force: Annotated[bool, Query(description="end another annotator's lease (administrator)")] = False,
) -> Dict[str, Any]:
    # Only an administrator token may end someone else's lease (checked first: the reply tells nothing).
    if force and request_role(request) < Role.ADMIN:
        raise HTTPException(403, "force-releasing another annotator's lease needs the administrator token")
    worker.known_case(case_id)
    if force:
        released = worker.leases.release(case_id, _optional_annotator(request, worker), force=True)
    else:
        released = worker.leases.release(case_id, _annotator(request, worker))
    return {"case_id": case_id, "released": released}


def _optional_annotator(request: Request, worker: Worker) -> Optional[str]:
    try:
        return _annotator(request, worker)
    except HTTPException:
        return None


@router.get(CASE + "/audit", response_model=List[AuditEvent])
def audit(case_id: str, worker: WorkerDep) -> List[Dict[str, Any]]:
    """Everything that happened to a case, oldest first: leases, releases, expiries, labels, PACS uploads."""
    worker.known_case(case_id)
    return worker.leases.audit(case_id)
