"""Health, worker info, model versions and activation (rollback)."""

from __future__ import annotations

import re
from typing import List, Optional

from fastapi import APIRouter, HTTPException

import asfda
from asfda.worker.context import WorkerDep
from asfda.worker.jobstore import finite
from asfda.worker.schemas import ActiveModel, Health, Info, ModelInfo

router = APIRouter()
VERSION_PATTERN = re.compile(r"^v\d{4,}$")


@router.get("/health", response_model=Health, tags=["worker"])
def health() -> Health:
    return Health()


def gpu_memory_free_mb(device: str) -> Optional[float]:
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return round(free / 2**20, 1)


@router.get("/info", response_model=Info, tags=["worker"])
def info(worker: WorkerDep) -> Info:
    version, config = worker.active()
    return Info(
        version=asfda.__version__,
        device=worker.settings.device,
        gpu_memory_free_mb=gpu_memory_free_mb(worker.settings.device),
        active_model_version=version,
        datastore=str(worker.store.root),
        labels=dict(config.labels) if config else {},
        label_colors={k: list(v) for k, v in config.label_colors.items()} if config else {},
        max_upload_bytes=worker.settings.max_upload_bytes,
    )


@router.get("/models", response_model=List[ModelInfo], tags=["models"])
def models(worker: WorkerDep) -> List[ModelInfo]:
    active = worker.store.models.active_version()
    return [
        ModelInfo(
            version=v.version,
            parent=v.parent,
            created=v.created,
            metrics=finite(v.metrics),
            note=v.note,
            active=v.version == active,
            gate=finite(v.gate) if v.gate.get("verdict") else None,
            gate_summary=v.gate_summary(),
            not_activated=v.not_activated,
            bundle_code_trusted=v.bundle_code_trusted,
        )
        for v in worker.store.models.versions()
    ]


@router.post("/models/{version}/activate", response_model=ActiveModel, tags=["models"])
def activate(version: str, worker: WorkerDep) -> ActiveModel:
    if not VERSION_PATTERN.match(version):
        raise HTTPException(400, f"invalid model version {version!r}: versions look like v0001")
    if version not in {v.version for v in worker.store.models.versions()}:
        raise HTTPException(404, f"model version {version!r} does not exist")
    worker.store.models.activate(version)  # a person's choice: unconditional (a rollback)
    return ActiveModel(active_model_version=version)
