"""What the routes share: the datastore, the jobs table, the queue, the settings; read per request."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Tuple

from fastapi import Depends, HTTPException, Request

from asfda.core.case_ids import validate_case_id
from asfda.core.errors import UnknownCase
from asfda.core.file_identity import file_fingerprint
from asfda.data.datastore import Datastore
from asfda.data.leases import LeaseBook
from asfda.models.config import ModelConfig
from asfda.worker.jobstore import JobStore
from asfda.worker.runner import JobRunner
from asfda.worker.settings import WorkerSettings


@functools.lru_cache(maxsize=16)
def _config_of(folder: str, fingerprint: str) -> ModelConfig:
    return ModelConfig.load(Path(folder) / "config.json")


@dataclass
class Worker:
    settings: WorkerSettings
    store: Datastore
    jobs: JobStore
    runner: JobRunner
    leases: LeaseBook

    def active(self) -> Tuple[Optional[str], Optional[ModelConfig]]:
        """The active version and its config. Read on every call, so a version a job published (or a
        rollback) is served at once; the config is cached by version folder and file fingerprint (an edit
        with its mtime preserved is read again too)."""
        version = self.store.models.active_version()
        if version is None:
            return None, None
        path = self.store.models.root / version / "config.json"
        return version, _config_of(str(path.parent), file_fingerprint(path))

    def require_active(self) -> Tuple[str, ModelConfig]:
        version, config = self.active()
        if version is None:
            raise HTTPException(409, "no active model in the datastore: import one with `asfda model import`")
        return version, config

    def case(self, case_id: str) -> Path:
        """The image path of a valid, existing case (400 for a malformed id, 404 for an unknown one)."""
        validate_case_id(case_id)
        return self.store.image_path(case_id)

    def known_case(self, case_id: str) -> str:
        """Like `case` without touching the image (which, from a PACS, may mean fetching it)."""
        if validate_case_id(case_id) not in self.store.case_ids():
            raise UnknownCase(f"case {case_id!r} is not in the datastore")
        return case_id


def get_worker(request: Request) -> Worker:
    return request.app.state.worker


# Routes declare `worker: WorkerDep` to receive the shared state.
WorkerDep = Annotated[Worker, Depends(get_worker)]
