"""Cases: list, worklist, image and prediction download, interactive inference, label upload."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Dict, List, Optional, Tuple

from fastapi import APIRouter, BackgroundTasks, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from asfda.data.effort import EFFORT
from asfda.data.label_submit import LabelSubmission
from asfda.data.predictions import stored_prediction
from asfda.io.volumes import NIFTI_SUFFIXES, volume_suffix
from asfda.worker import routes_dicomweb
from asfda.worker import worklist as worklist_queries
from asfda.worker.annotators import request_annotator
from asfda.worker.conditional import base_revision, client_source, etag
from asfda.worker.context import Worker, WorkerDep
from asfda.worker.heavy import HeavySlot
from asfda.worker.image_export import exported_image
from asfda.worker.jobstore import CANCELLED, FINISHED, SUCCEEDED
from asfda.worker.recovery import uploads_dir
from asfda.worker.schemas import Case, LabelReply, Worklist
from asfda.worker.uploads import receive_upload, store_label

router = APIRouter(tags=["cases"])
INFER_POLL_S = 0.1
INFER_WAIT_S = 3600.0
# `{case_id:path}` so an id with a slash reaches the handler and gets a 400, not a routing 404.
CASE = "/cases/{case_id:path}"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "NIfTI or NRRD labelmap"},
                        "mask": {
                            "type": "string",
                            "format": "binary",
                            "description": "sparse label: uint8 0/1 volume on the image grid, 1 = annotated",
                        },
                        "author": {"type": "string"},
                        "effort": {
                            "type": "string",
                            "description": "JSON effort record: active_seconds, idle_gap_threshold_s, "
                            "voxels_changed, slices_changed, effects, opened_at, submitted_at, client",
                        },
                    },
                }
            }
        },
    }
}


def _volume_reply(data: bytes, filename: str, version: Optional[str]) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if version:
        headers["X-Model-Version"] = version
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/cases", response_model=List[Case])
def cases(worker: WorkerDep) -> List[Dict[str, Any]]:
    return worklist_queries.cases(worker.store, worker.store.models.active_version(), worker.leases.leases())


@router.get("/worklist", response_model=Worklist)
def worklist(
    worker: WorkerDep,
    k: Annotated[Optional[int], Query(ge=0, description="budget: mark the first k ranks selected")] = None,
) -> Dict[str, Any]:
    return worklist_queries.worklist(worker.store, worker.store.models.active_version(), k, worker.leases.leases())


@router.get(CASE + "/image", response_class=Response)
def image(case_id: str, worker: WorkerDep, _slot: HeavySlot) -> Response:
    """The case's image as NIfTI, streamed from a file (NRRD and DICOM converted once, in their voxel type)."""
    path = worker.case(case_id)
    if path.is_file() and volume_suffix(path) in NIFTI_SUFFIXES:
        return FileResponse(path, media_type="application/octet-stream", filename=f"{case_id}{volume_suffix(path)}")
    exported = exported_image(worker.store, case_id, path)
    return FileResponse(exported, media_type="application/octet-stream", filename=f"{case_id}.nii.gz")


def _served(worker: Worker, case_id: str, version: Optional[str] = None) -> Tuple[Optional[tuple], str]:
    """((bytes, model version) of the stored prediction, "") if it was made from the image and the model
    content as they are now (and by `version` when given); else (None, why not)."""
    found = stored_prediction(worker.store, case_id)
    if found is None:
        return None, "it has no stored prediction yet"
    if version is not None and found.model_version != version:
        return None, f"its stored prediction is of {found.model_version}, not the active {version}"
    reason = found.stale_reason(worker.store)
    if reason is not None:
        return None, f"its stored prediction is stale: {reason}"
    try:
        return (found.path.read_bytes(), found.model_version), ""
    except FileNotFoundError:
        return None, "it has no stored prediction yet"


@router.get(CASE + "/prediction", response_class=Response)
def prediction(case_id: str, worker: WorkerDep) -> Response:
    worker.case(case_id)
    served, why = _served(worker, case_id)
    if served is None:
        raise HTTPException(404, f"case {case_id!r}: {why} (POST /cases/{case_id}/infer)")
    return _volume_reply(served[0], f"{case_id}-prediction.nii.gz", served[1])


@router.post(CASE + "/infer", response_class=Response)
async def infer(case_id: str, worker: WorkerDep) -> Response:
    """Predict one case at top priority and wait for it; replies with the NIfTI labelmap."""
    await run_in_threadpool(worker.case, case_id)
    version, _config = worker.require_active()
    # Inference is deterministic: a stored prediction of the active model's content for the image as it is
    # now is the answer, and serving it avoids waiting behind a running training job.
    cached, _why = await run_in_threadpool(_served, worker, case_id, version)
    if cached:
        return _volume_reply(cached[0], f"{case_id}-prediction.nii.gz", cached[1])
    pending = [j for j in worker.jobs.unfinished("infer") if j["params"].get("case_id") == case_id]
    job = pending[0] if pending else await run_in_threadpool(worker.runner.submit, "infer", {"case_id": case_id})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INFER_WAIT_S
    while job["state"] not in FINISHED:
        if loop.time() > deadline:
            raise HTTPException(504, f"inference job {job['job_id']} did not finish in {INFER_WAIT_S:.0f} s")
        await asyncio.sleep(INFER_POLL_S)
        job = await run_in_threadpool(worker.jobs.get, job["job_id"])
    if job["state"] == CANCELLED:
        raise HTTPException(409, f"inference job {job['job_id']} was cancelled")
    if job["state"] != SUCCEEDED:
        raise HTTPException(500, f"inference failed: {job['error']}")
    found, why = await run_in_threadpool(_served, worker, case_id)
    if found is None:  # e.g. the image was replaced while it was predicted: never serve it for the new one
        raise HTTPException(409, f"case {case_id!r}: inference finished, but {why}; ask again")
    return _volume_reply(found[0], f"{case_id}-prediction.nii.gz", found[1])


@router.put(CASE + "/label", response_model=LabelReply, openapi_extra=UPLOAD_BODY)
async def upload_label(
    case_id: str,
    request: Request,
    response: Response,
    worker: WorkerDep,
    background: BackgroundTasks,
    _slot: HeavySlot,
    overwrite: Annotated[bool, Query(description="replace the current revision, whichever it is")] = False,
    no_structure: Annotated[
        bool, Query(description="the case shows no structure: an all-background label, recorded as that verdict")
    ] = False,
    if_match: Annotated[Optional[str], Header(description='the revision the label was opened from: "r0002"')] = None,
    if_none_match: Annotated[Optional[str], Header(description="'*': the case had no label when opened")] = None,
    x_asfda_client: Annotated[Optional[str], Header(description="e.g. slicer/asfda-module (recorded)")] = None,
) -> Dict[str, Any]:
    """Store a clinician label (multipart `file` NIfTI/NRRD, optional `mask` of the annotated voxels for a
    sparse label, optional `effort` JSON record of the editing time; the annotator from their token, the
    X-Annotator header or form `author`) as the case's next revision; durable before the reply; ends the
    submitter's lease. `If-Match: "<revision>"` (or `If-None-Match: *` for a case opened without a label)
    names what the label was opened from: 409 naming both authors when the case changed since."""
    await run_in_threadpool(worker.case, case_id)  # 400/404 before a byte of the body is read
    base = base_revision(if_match, if_none_match)
    version, config = worker.require_active()
    path, mask, author, effort = await receive_upload(request, uploads_dir(worker.store))
    try:
        submission = LabelSubmission(
            case_id,
            path,
            request_annotator(request, fallback=author),
            client_source(x_asfda_client),
            base_revision=base,
            overwrite=overwrite,
            mask=mask,
            no_structure=no_structure,
            extra={EFFORT: effort} if effort is not None else {},
        )
        reply = await run_in_threadpool(store_label, worker.leases, worker.store, submission, version, config)
    finally:
        path.unlink(missing_ok=True)
        if mask is not None:
            mask.unlink(missing_ok=True)
    if reply["seg_queued"]:
        background.add_task(routes_dicomweb.flush_segs, worker)  # after the reply: the label is already safe
    response.headers["ETag"] = etag(reply["revision"])
    return reply
