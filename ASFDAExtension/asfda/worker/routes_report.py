"""What each adaptation round cost: cases, annotated slices, annotator minutes (`asfda report` over HTTP)."""

from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter

from asfda.loop.report import effort_report
from asfda.worker.context import WorkerDep
from asfda.worker.schemas import EffortReport

router = APIRouter(tags=["models"])


@router.get("/report", response_model=EffortReport)
def report(worker: WorkerDep) -> Dict[str, Any]:
    """Per adaptation round (a model version and the labels new to it), oldest first: its cases, annotated
    slices and the active minutes recorded with its labels. Without Dice: reference labels are the CLI's
    (`asfda report --references`). Runs in FastAPI's thread pool; reads the datastore only."""
    return effort_report(worker.store).to_dict()
