"""Label uploads: stream the multipart body to a temp file under the datastore, then validate and store it."""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from asfda.data.datastore import Datastore, LabelTag
from asfda.data.effort import parse_effort
from asfda.data.label_submit import LabelSubmission, submit_label
from asfda.data.leases import LeaseBook
from asfda.io.volumes import volume_suffix
from asfda.models.config import ModelConfig

# MONAI's cached readers are shared objects; reading volumes one at a time keeps them safe across threads.
VOLUME_IO_LOCK = threading.Lock()
MAX_AUTHOR_CHARS = 200


def _suffix_for(filename: str, head: bytes) -> str:
    suffix = volume_suffix(Path(filename or ""))
    if suffix:
        return suffix
    # No usable name: recognise the format from its first bytes.
    if head.startswith(b"NRRD"):
        return ".nrrd"
    if head.startswith(b"\x1f\x8b"):
        return ".nii.gz"
    return ".nii"


async def _spool(upload: UploadFile, folder: Path) -> Path:
    head = await upload.read(4)
    await upload.seek(0)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex}{_suffix_for(upload.filename or '', head)}"
    with open(target, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return target


async def receive_upload(
    request: Request, folder: Path
) -> Tuple[Path, Optional[Path], Optional[str], Optional[Dict[str, Any]]]:
    """Parse `file`, an optional `mask` (annotated region of a sparse label), `author` and an optional
    `effort` record (JSON text, see asfda.data.effort) from a multipart body; returns (temp label path, temp
    mask path or None, author, checked effort record or None). A malformed effort record is a 422 before
    any file is written.

    The body size limit is enforced by BodySizeLimitMiddleware while this reads the stream; the temp
    file lives in <datastore>/.uploads/ so one left by a killed worker is removed at the next start.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(400, "expected a multipart/form-data body with a 'file' field")
    try:
        form = await MultiPartParser(request.headers, request.stream(), max_files=2, max_fields=10).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "the multipart body has no 'file' part with a label volume")
        author = form.get("author")
        author = (" ".join(author.split())[:MAX_AUTHOR_CHARS] or None) if isinstance(author, str) else None
        mask = form.get("mask")
        if mask is not None and not isinstance(mask, UploadFile):
            raise HTTPException(422, "the multipart 'mask' part must be a file (the annotated-region mask volume)")
        effort = form.get("effort")
        if effort is not None and not isinstance(effort, str):
            raise HTTPException(422, "the multipart 'effort' part must be a JSON text field, not a file")
        effort = parse_effort(effort) if effort is not None else None
        target = await _spool(upload, folder)
        try:
            mask_target = await _spool(mask, folder) if mask is not None else None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target, mask_target, author, effort
    finally:
        await form.close()


def store_label(
    leases: LeaseBook, store: Datastore, submission: LabelSubmission, version: str, config: ModelConfig
) -> Dict:
    """Check and store an uploaded label through the one submit path; the reply body."""
    extra = {**submission.extra, "prediction": prediction_provenance(store, submission.case_id)}
    submission = replace(submission, extra=extra)
    with VOLUME_IO_LOCK:  # the checks read the image too
        return submit_label(store, submission, config, version, leases).reply()


def prediction_provenance(store: Datastore, case_id: str) -> Optional[Dict]:
    """Which stored prediction a clinician label was corrected from: its model version, time and hash."""
    path = store.label_path(case_id, LabelTag.PREDICTION)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None
    records = [r for r in store.state.labels(LabelTag.PREDICTION.value) if r.case_id == case_id]
    record = records[0] if records else None
    return {
        "model_version": record.model_version if record else None,
        "created": record.created if record else None,
        "sha256": digest,
    }
