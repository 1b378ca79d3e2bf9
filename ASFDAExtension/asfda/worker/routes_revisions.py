"""A case's label revisions: the list (author, time, model version, source) and each revision's file."""

from __future__ import annotations

from typing import Any, Dict, List

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from asfda.data.effort import efforts_by_revision
from asfda.worker.conditional import etag
from asfda.worker.context import WorkerDep
from asfda.worker.schemas import LabelRevision

router = APIRouter(tags=["cases"])
CASE = "/cases/{case_id:path}"


@router.get(CASE + "/revisions", response_model=List[LabelRevision])
async def revisions(case_id: str, worker: WorkerDep) -> List[Dict[str, Any]]:
    """Every accepted label of the case, oldest first; `current` marks the one in labels/final/."""
    await run_in_threadpool(worker.known_case, case_id)
    book = worker.leases.revisions
    found = await run_in_threadpool(book.revisions, case_id)
    current = await run_in_threadpool(book.current, case_id)
    efforts = efforts_by_revision(await run_in_threadpool(worker.leases.audit, case_id))
    return [
        {
            **{k: v for k, v in r.fields().items() if k != "path"},
            "current": current is not None and r == current,
            "effort": efforts.get(r.revision),
        }
        for r in found
    ]


@router.get(CASE + "/revisions/{revision}", response_class=FileResponse)
async def revision_file(case_id: str, revision: str, worker: WorkerDep) -> FileResponse:
    """One revision's label file (NIfTI), with its revision as the ETag."""
    await run_in_threadpool(worker.known_case, case_id)
    book = worker.leases.revisions
    found = [r for r in await run_in_threadpool(book.revisions, case_id) if r.revision == revision]
    if not found:
        raise HTTPException(404, f"case {case_id!r} has no label revision {revision!r}")
    return FileResponse(
        book.file_of(found[0]),
        media_type="application/octet-stream",
        filename=f"{case_id}-{revision}.nii.gz",
        headers={"ETag": etag(revision)},
    )
