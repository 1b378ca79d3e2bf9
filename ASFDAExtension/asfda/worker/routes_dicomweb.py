"""A PACS behind the datastore: listing refresh, SEG write-back status and retry."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Dict, List

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from asfda.worker.context import Worker, WorkerDep

router = APIRouter(tags=["dicomweb"])
log = logging.getLogger("asfda.worker")
RETRY_INTERVAL_S = 60.0
_FLUSH_LOCK = threading.Lock()  # one write-back pass at a time (a timer and a request may meet)


def dicomweb_source(worker: Worker):
    from asfda.data.dicomweb.source import DicomwebSource

    source = worker.store.image_source
    return source if isinstance(source, DicomwebSource) else None


def _require(worker: Worker):
    source = dicomweb_source(worker)
    if source is None:
        raise HTTPException(409, "this datastore reads a folder, not a PACS (asfda serve --dicomweb URL)")
    return source


def flush_segs(worker: Worker) -> List[Dict[str, Any]]:
    from asfda.data.dicomweb.writeback import flush

    source = dicomweb_source(worker)
    if source is None:
        return []
    with _FLUSH_LOCK:
        return flush(worker.store, source, worker.leases)


async def retry_forever(worker: Worker) -> None:
    """Background task of the worker: send pending SEGs now and then (PACS back up, rejection fixed)."""
    while True:
        try:
            await run_in_threadpool(flush_segs, worker)
        except Exception:  # a bug here must not end the loop; the next pass tries again
            log.exception("SEG write-back pass failed")
        await asyncio.sleep(RETRY_INTERVAL_S)


@router.get("/dicomweb")
def status(worker: WorkerDep) -> Dict[str, Any]:
    source = _require(worker)
    cached = source.index.cached()
    return {
        "url": source.config.url,
        "listed_at": source.index.listed_at(),
        "series": len(source.index.case_ids()),
        "cached_series": len(cached),
        "cache_mb": round(sum(c["bytes"] for c in cached) / 2**20, 3),
        "cache_limit_mb": source.config.cache_mb,
        "fetches": source.index.fetch_count(),
        "pending_segs": source.index.pending_segs(),
    }


@router.post("/dicomweb/refresh")
def refresh(worker: WorkerDep) -> Dict[str, Any]:
    """List the PACS again now (QIDO-RS); 503 with the cause when it does not answer."""
    return {"series": _require(worker).refresh()}


@router.post("/dicomweb/retry")
def retry(worker: WorkerDep) -> Dict[str, Any]:
    """Send every pending SEG now; one result per case."""
    _require(worker)
    return {"results": flush_segs(worker)}
