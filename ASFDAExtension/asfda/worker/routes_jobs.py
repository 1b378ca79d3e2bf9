"""Rank and adapt jobs, and the jobs list / get / cancel."""

from __future__ import annotations

from typing import Any, Dict, List

from fastapi import APIRouter, HTTPException

from asfda.worker.context import Worker, WorkerDep
from asfda.worker.jobstore import DuplicateJob
from asfda.worker.schemas import AdaptRequest, Job, RankRequest

router = APIRouter(tags=["jobs"])
JOBS_LISTED = 200


def public(job: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in job.items() if k not in ("pid", "cancel_requested")}


def _submit_once(worker: Worker, kind: str, params: Dict[str, Any]) -> Dict[str, Any]:
    # A second rank or adapt while one is pending would only redo the same work on the GPU; the check and
    # the insert are one transaction (JobStore.submit), so concurrent requests get exactly one 202.
    try:
        return public(worker.runner.submit(kind, params, exclusive=True))
    except DuplicateJob as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/rank", response_model=Job, status_code=202)
def rank(request: RankRequest, worker: WorkerDep) -> Dict[str, Any]:
    worker.require_active()
    return _submit_once(worker, "rank", request.model_dump())


@router.post("/adapt", response_model=Job, status_code=202)
def adapt(request: AdaptRequest, worker: WorkerDep) -> Dict[str, Any]:
    worker.require_active()
    if not worker.store.labeled_ids():
        raise HTTPException(409, "no clinician labels yet: submit at least one label before adapting")
    return _submit_once(worker, "adapt", request.model_dump())


@router.get("/jobs", response_model=List[Job])
def jobs(worker: WorkerDep) -> List[Dict[str, Any]]:
    """The newest jobs first (at most 200)."""
    return [public(j) for j in worker.jobs.list(JOBS_LISTED)]


def _known(job, job_id: str) -> Dict[str, Any]:
    if job is None:
        raise HTTPException(404, f"job {job_id!r} does not exist")
    return public(job)


@router.get("/jobs/{job_id}", response_model=Job)
def job(job_id: str, worker: WorkerDep) -> Dict[str, Any]:
    return _known(worker.jobs.get(job_id), job_id)


@router.post("/jobs/{job_id}/cancel", response_model=Job)
def cancel(job_id: str, worker: WorkerDep) -> Dict[str, Any]:
    """Cancel a queued or running job (its process tree is killed); a finished job is returned unchanged."""
    return _known(worker.runner.cancel(job_id), job_id)
