"""SQLite state of a datastore: label records and scores. Survives restarts; safe across processes."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from asfda.core.sqlite_db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    case_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    author TEXT,
    created TEXT NOT NULL,
    model_version TEXT,
    extra TEXT,
    PRIMARY KEY (case_id, tag)
);
CREATE TABLE IF NOT EXISTS scores (
    case_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    model_version TEXT,
    dkd REAL,
    asd REAL,
    score REAL,
    rank INTEGER,
    selected INTEGER NOT NULL DEFAULT 0,
    scored_at TEXT NOT NULL,
    run_id TEXT,
    knowledge_source TEXT,
    requested_slices TEXT,
    PRIMARY KEY (case_id, strategy)
);
"""
# Columns added after the first release: (table, column, type), added to older databases on open.
_ADDED_COLUMNS = [("scores", "knowledge_source", "TEXT"), ("scores", "requested_slices", "TEXT")]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class LabelRecord:
    case_id: str
    tag: str
    author: Optional[str]
    created: str
    model_version: Optional[str]
    extra: Dict[str, Any]


@dataclass
class ScoreRecord:
    case_id: str
    strategy: str
    model_version: Optional[str]
    dkd: Optional[float]
    asd: Optional[float]
    score: float
    rank: int
    selected: bool
    scored_at: str
    run_id: Optional[str] = None
    knowledge_source: Optional[str] = None  # what DKD measured against: norm_stats, reference_stats, ...
    # A sparse rank's request for a picked volume: {"axis": 0|1|2, "indices": [...], "rule": "even"|...}
    requested_slices: Optional[Dict[str, Any]] = None


class StateDB:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self.connect() as db:
            db.executescript(_SCHEMA)
            for table, column, kind in _ADDED_COLUMNS:
                if column not in {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}:
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise

    def connect(self):
        return connect(self.path)

    def record_label(self, record: LabelRecord, db: Optional[sqlite3.Connection] = None) -> None:
        """Write a label's row; on `db` (the caller's open transaction) when given, so it commits with it."""
        row = (record.case_id, record.tag, record.author, record.created, record.model_version)
        row += (json.dumps(record.extra),)
        if db is not None:
            db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)", row)
            return
        with self._lock, self.connect() as own:
            own.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)", row)

    def remove_label(self, case_id: str, tag: str) -> None:
        with self._lock, self.connect() as db:
            db.execute("DELETE FROM labels WHERE case_id = ? AND tag = ?", (case_id, tag))

    def labels(self, tag: Optional[str] = None) -> List[LabelRecord]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM labels" + (" WHERE tag = ?" if tag else "") + " ORDER BY case_id", (tag,) if tag else ()
            ).fetchall()
        return [
            LabelRecord(
                r["case_id"], r["tag"], r["author"], r["created"], r["model_version"], json.loads(r["extra"] or "{}")
            )
            for r in rows
        ]

    def replace_scores(self, strategy: str, records: List[ScoreRecord]) -> None:
        """Swap a strategy's whole ranking in one transaction, so readers never see half of one."""
        with self._lock, self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM scores WHERE strategy = ?", (strategy,))
            db.executemany(
                "INSERT INTO scores (case_id, strategy, model_version, dkd, asd, score, rank, selected, scored_at,"
                " run_id, knowledge_source, requested_slices) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.case_id,
                        r.strategy,
                        r.model_version,
                        r.dkd,
                        r.asd,
                        r.score,
                        r.rank,
                        int(r.selected),
                        r.scored_at,
                        r.run_id,
                        r.knowledge_source,
                        None if r.requested_slices is None else json.dumps(r.requested_slices),
                    )
                    for r in records
                ],
            )
            db.execute("COMMIT")

    def scores(self, strategy: str) -> List[ScoreRecord]:
        with self.connect() as db:
            rows = db.execute("SELECT * FROM scores WHERE strategy = ? ORDER BY rank", (strategy,)).fetchall()
        return [
            ScoreRecord(
                r["case_id"],
                r["strategy"],
                r["model_version"],
                r["dkd"],
                r["asd"],
                r["score"],
                r["rank"],
                bool(r["selected"]),
                r["scored_at"],
                r["run_id"],
                r["knowledge_source"],
                json.loads(r["requested_slices"]) if r["requested_slices"] else None,
            )
            for r in rows
        ]

    def requested_slices(self, case_id: str) -> Optional[Dict[str, Any]]:
        """The slices the latest ranking that scored `case_id` asked for (None: whole volume or not picked)."""
        with self.connect() as db:
            row = db.execute(
                "SELECT requested_slices FROM scores WHERE case_id = ? ORDER BY scored_at DESC, rowid DESC LIMIT 1",
                (case_id,),
            ).fetchone()
        return json.loads(row["requested_slices"]) if row and row["requested_slices"] else None
