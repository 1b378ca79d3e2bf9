"""The jobs table (in the datastore's SQLite file): queue order, state, progress events, results.

Both the API process and the job child write here; every state change is one conditional UPDATE, so
the two can never both win a transition (e.g. a cancel and a normal finish).
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from asfda.core.errors import AsfdaError
from asfda.core.sqlite_db import connect

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
# Interactive inference first, then scoring, then training (lower runs first).
# Lower runs first. An advisory verdict comes after everything a person waits for (issue 18: model first).
PRIORITY = {"infer": 0, "rank": 1, "adapt": 2, "verdict": 3}
EMPTY_PROGRESS = {"phase": None, "step": None, "total": None, "metric": None, "eta_s": None}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    progress TEXT,
    error TEXT,
    result TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority, seq);
"""


class DuplicateJob(AsfdaError):
    """A job of the same kind is already queued or running."""


def utc_now() -> str:
    # Milliseconds: jobs start and finish within the same second, and their order must show.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity (Starlette refuses them): replace them with null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JobStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        with self.connect() as db:
            db.executescript(_SCHEMA)

    def connect(self):
        return connect(self.path)

    @staticmethod
    def _as_job(row: sqlite3.Row) -> Dict[str, Any]:
        return {
            "job_id": row["job_id"],
            "kind": row["kind"],
            "state": row["state"],
            "params": json.loads(row["params"]),
            "progress": {**EMPTY_PROGRESS, **json.loads(row["progress"] or "{}")},
            "error": row["error"],
            "result": json.loads(row["result"]) if row["result"] else None,
            "created": row["created"],
            "started": row["started"],
            "finished": row["finished"],
            "pid": row["pid"],
            "cancel_requested": bool(row["cancel_requested"]),
        }

    def submit(self, kind: str, params: Dict[str, Any], exclusive: bool = False) -> Dict[str, Any]:
        """Queue a job. With `exclusive`, refuse while a job of `kind` is queued or running: the check and the
        insert are one IMMEDIATE transaction, so two concurrent requests cannot both pass the check.

        Raises:
            DuplicateJob: `exclusive` and such a job is pending (it is named).
        """
        job_id = uuid.uuid4().hex[:16]
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if exclusive:
                    pending = db.execute(
                        "SELECT job_id, state FROM jobs WHERE kind = ? AND state IN (?, ?) ORDER BY seq LIMIT 1",
                        (kind, QUEUED, RUNNING),
                    ).fetchone()
                    if pending is not None:
                        raise DuplicateJob(f"a {kind} job is already {pending['state']} (job {pending['job_id']})")
                db.execute(
                    "INSERT INTO jobs (job_id, kind, priority, state, params, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, kind, PRIORITY[kind], QUEUED, json.dumps(params), utc_now()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self.get(job_id)

    def get(self, job_id: str) -> Optional[Dict[str, Any]]:
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._as_job(row) if row else None

    def list(self, limit: int = 200) -> List[Dict[str, Any]]:
        with self.connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [self._as_job(r) for r in rows]

    def unfinished(self, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        query = "SELECT * FROM jobs WHERE state IN (?, ?)" + (" AND kind = ?" if kind else "") + " ORDER BY seq"
        with self.connect() as db:
            rows = db.execute(query, (QUEUED, RUNNING) + ((kind,) if kind else ())).fetchall()
        return [self._as_job(r) for r in rows]

    def next_queued(self) -> Optional[Dict[str, Any]]:
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE state = ? ORDER BY priority, seq LIMIT 1", (QUEUED,)).fetchone()
        return self._as_job(row) if row else None

    def _transition(self, job_id: str, sets: str, values: tuple, from_states: tuple) -> bool:
        marks = ", ".join("?" * len(from_states))
        with self.connect() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE job_id = ? AND state IN ({marks})", values + (job_id,) + from_states
            )
            return cursor.rowcount == 1

    def interactive_waiting(self, priority: int) -> bool:
        """Whether a queued job would run before one of `priority` (a rank checks this between chunks)."""
        with self.connect() as db:
            row = db.execute(
                "SELECT 1 FROM jobs WHERE state = ? AND priority < ? LIMIT 1", (QUEUED, priority)
            ).fetchone()
        return row is not None

    def requeue(self, job_id: str) -> bool:
        """A running job that stepped aside goes back to the queue, keeping its progress."""
        return self._transition(job_id, "state = ?, pid = NULL", (QUEUED,), (RUNNING,))

    def claim(self, job_id: str) -> bool:
        return self._transition(job_id, "state = ?, started = ?", (RUNNING, utc_now()), (QUEUED,))

    def set_pid(self, job_id: str, pid: int) -> None:
        self._transition(job_id, "pid = ?", (pid,), (RUNNING,))

    def request_cancel(self, job_id: str) -> None:
        self._transition(job_id, "cancel_requested = 1", (), (QUEUED, RUNNING))

    def finish(
        self,
        job_id: str,
        state: str,
        error: Optional[str] = None,
        result: Optional[Dict[str, Any]] = None,
        from_states: tuple = (QUEUED, RUNNING),
    ) -> bool:
        sets = "state = ?, finished = ?, error = COALESCE(?, error), result = COALESCE(?, result)"
        payload = json.dumps(finite(result)) if result is not None else None
        return self._transition(job_id, sets, (state, utc_now(), error, payload), from_states)

    # Written by the job child while it runs.
    def report_progress(self, job_id: str, progress: Dict[str, Any]) -> None:
        self._transition(job_id, "progress = ?", (json.dumps(finite(progress)),), (RUNNING,))

    def report_result(self, job_id: str, result: Dict[str, Any]) -> None:
        self._transition(job_id, "result = ?", (json.dumps(finite(result)),), (RUNNING,))

    def report_error(self, job_id: str, error: str) -> None:
        self._transition(job_id, "error = ?", (one_line(error),), (RUNNING,))

    def fail_unfinished(self, reason: str) -> List[Dict[str, Any]]:
        """Mark every queued or running job failed (used at start-up, after a worker died)."""
        jobs = self.unfinished()
        for job in jobs:
            self.finish(job["job_id"], FAILED, error=reason)
        return jobs
