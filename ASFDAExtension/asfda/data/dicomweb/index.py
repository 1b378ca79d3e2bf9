"""The DICOMweb datastore's own SQLite tables (dicomweb.db): the cached QIDO listing, the series cache's
use times, the bytes fetches in flight have reserved, a log of WADO fetches, and the outbox of SEGs to write
back."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from asfda.core.process_identity import ProcessIdentity
from asfda.core.sqlite_db import connect
from asfda.data.state import utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    case_id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    modality TEXT,
    description TEXT,
    instances INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cached (case_id TEXT PRIMARY KEY, bytes INTEGER NOT NULL, last_used REAL NOT NULL,
    fingerprint TEXT);
CREATE TABLE IF NOT EXISTS reservations (token TEXT PRIMARY KEY, case_id TEXT NOT NULL, bytes INTEGER NOT NULL,
    fingerprint TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started REAL NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fetches (seq INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT, at TEXT, bytes INTEGER,
    seconds REAL);
CREATE TABLE IF NOT EXISTS seg_outbox (
    case_id TEXT PRIMARY KEY,
    annotator TEXT,
    model_version TEXT,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at TEXT,
    seg_series_uid TEXT
);
"""


class DicomwebIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        with connect(self.path) as db:
            db.executescript(_SCHEMA)
            if "fingerprint" not in {r["name"] for r in db.execute("PRAGMA table_info(cached)")}:
                # Series cached before the column existed count as stale: fetched again once on next use.
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                    db.execute("ALTER TABLE cached ADD COLUMN fingerprint TEXT")

    # -- listing --------------------------------------------------------------------------------

    def replace_listing(self, rows: Iterable[Dict[str, Any]]) -> None:
        with connect(self.path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM series")
            db.executemany(
                "INSERT OR REPLACE INTO series VALUES (:case_id, :study_uid, :modality, :description, :instances)",
                list(rows),
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('listed_at', ?)", (str(time.time()),))
            db.execute("COMMIT")

    def listed_at(self) -> Optional[float]:
        with connect(self.path) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'listed_at'").fetchone()
        return float(row["value"]) if row else None

    def case_ids(self) -> List[str]:
        with connect(self.path) as db:
            return [r["case_id"] for r in db.execute("SELECT case_id FROM series ORDER BY case_id").fetchall()]

    def series(self, case_id: str) -> Optional[Dict[str, Any]]:
        with connect(self.path) as db:
            row = db.execute("SELECT * FROM series WHERE case_id = ?", (case_id,)).fetchone()
        return dict(row) if row else None

    # -- cache ----------------------------------------------------------------------------------

    def touch(self, case_id: str, size: Optional[int] = None, fingerprint: Optional[str] = None) -> None:
        """Mark a series used now; with `size`, record a new fetch and the listing fingerprint it was made under."""
        with connect(self.path) as db:
            if size is None:
                db.execute("UPDATE cached SET last_used = ? WHERE case_id = ?", (time.time(), case_id))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO cached (case_id, bytes, last_used, fingerprint) VALUES (?, ?, ?, ?)",
                    (case_id, int(size), time.time(), fingerprint),
                )

    def fetched_fingerprint(self, case_id: str) -> Optional[str]:
        """The listing fingerprint the cached copy of a series was fetched under (None: unknown or not cached)."""
        with connect(self.path) as db:
            row = db.execute("SELECT fingerprint FROM cached WHERE case_id = ?", (case_id,)).fetchone()
        return row["fingerprint"] if row else None

    def forget(self, case_id: str) -> None:
        with connect(self.path) as db:
            db.execute("DELETE FROM cached WHERE case_id = ?", (case_id,))

    def cached(self) -> List[Dict[str, Any]]:
        """Cached series, least recently used first."""
        with connect(self.path) as db:
            return [dict(r) for r in db.execute("SELECT * FROM cached ORDER BY last_used").fetchall()]

    # -- reservations of fetches in flight -----------------------------------------------------
    # Callers hold the cache lock (DicomwebSource.cache_lock) around reserve and around any eviction, so
    # cached + reserved bytes never exceed the limit whatever the number of concurrent fetchers.

    def reserved_bytes(self) -> int:
        with connect(self.path) as db:
            return int(db.execute("SELECT COALESCE(SUM(bytes), 0) AS n FROM reservations").fetchone()["n"])

    def reservations(self) -> List[Dict[str, Any]]:
        with connect(self.path) as db:
            return [dict(r) for r in db.execute("SELECT * FROM reservations ORDER BY at").fetchall()]

    def reserve(self, token: str, case_id: str, size: int, fingerprint: str, owner: ProcessIdentity) -> None:
        with connect(self.path) as db:
            db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token, case_id, int(size), fingerprint, owner.host, owner.pid, owner.started, time.time()),
            )

    def settle(self, token: str, case_id: str, size: int, fingerprint: Optional[str]) -> None:
        """The reserved bytes become the cached series' bytes in one transaction: never counted twice or not at all."""
        with connect(self.path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM reservations WHERE token = ?", (token,))
            db.execute(
                "INSERT OR REPLACE INTO cached (case_id, bytes, last_used, fingerprint) VALUES (?, ?, ?, ?)",
                (case_id, int(size), time.time(), fingerprint),
            )
            db.execute("COMMIT")

    def release(self, token: str) -> None:
        with connect(self.path) as db:
            db.execute("DELETE FROM reservations WHERE token = ?", (token,))

    def dead_reservations(self) -> List[Dict[str, Any]]:
        """Reservations whose fetching process is certainly gone (SIGKILL, power cut)."""
        return [
            row
            for row in self.reservations()
            if ProcessIdentity(row["host"], int(row["pid"]), float(row["pid_started"])).is_dead()
        ]

    def is_cached_row(self, case_id: str) -> bool:
        with connect(self.path) as db:
            return db.execute("SELECT 1 FROM cached WHERE case_id = ?", (case_id,)).fetchone() is not None

    def log_fetch(self, case_id: str, size: int, seconds: float) -> None:
        with connect(self.path) as db:
            db.execute(
                "INSERT INTO fetches (case_id, at, bytes, seconds) VALUES (?, ?, ?, ?)",
                (case_id, utc_now(), size, seconds),
            )

    def fetch_count(self) -> int:
        with connect(self.path) as db:
            return int(db.execute("SELECT COUNT(*) AS n FROM fetches").fetchone()["n"])

    # -- SEG outbox -----------------------------------------------------------------------------

    def queue_seg(self, case_id: str, annotator: Optional[str], model_version: Optional[str]) -> None:
        """A newer label of the same case replaces the queued one (the SEG is written from the latest)."""
        with connect(self.path) as db:
            db.execute(
                "INSERT OR REPLACE INTO seg_outbox (case_id, annotator, model_version, queued_at) VALUES (?, ?, ?, ?)",
                (case_id, annotator, model_version, str(time.time_ns())),  # unique per submission
            )

    def pending_segs(self) -> List[Dict[str, Any]]:
        with connect(self.path) as db:
            rows = db.execute("SELECT * FROM seg_outbox WHERE sent_at IS NULL ORDER BY queued_at").fetchall()
        return [dict(r) for r in rows]

    def seg_state(self, case_id: str) -> Optional[Dict[str, Any]]:
        with connect(self.path) as db:
            row = db.execute("SELECT * FROM seg_outbox WHERE case_id = ?", (case_id,)).fetchone()
        return dict(row) if row else None

    def seg_attempt(self, case_id: str, queued_at: str, error: Optional[str], seg_series_uid: Optional[str]) -> None:
        # Only the row this attempt was made for: a label submitted meanwhile stays pending.
        with connect(self.path) as db:
            db.execute(
                "UPDATE seg_outbox SET attempts = attempts + 1, last_error = ?, sent_at = ?, seg_series_uid = ? "
                "WHERE case_id = ? AND queued_at = ?",
                (error, None if error else utc_now(), seg_series_uid, case_id, queued_at),
            )
