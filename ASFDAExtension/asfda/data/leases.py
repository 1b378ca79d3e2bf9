"""Case leases (one annotator per case at a time) and the per-case audit trail, in the datastore's SQLite.

A lease is a row (case, annotator, expiry). Every change runs in one BEGIN IMMEDIATE transaction, so two
requests racing for "next case" (threads of one worker or separate processes) are serialised by SQLite
and can never both get the same case. Expired leases are swept inside the same transactions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from asfda.core.errors import AsfdaError
from asfda.core.sqlite_db import connect
from asfda.data.label_revisions import LabelRevisions, Revision, author_of
from asfda.data.state import utc_now

DEFAULT_LEASE_S = 30 * 60  # long enough to correct one volume; renewed by asking again

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    case_id TEXT PRIMARY KEY,
    annotator TEXT NOT NULL,
    leased_at TEXT NOT NULL,
    expires REAL NOT NULL,
    revision TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL,
    at TEXT NOT NULL,
    annotator TEXT,
    action TEXT NOT NULL,
    model_version TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_case ON audit (case_id, seq);
"""
# The label revision a lease was granted on (added with label revisions; older tables gain it on open).
_REVISION_COLUMN = "ALTER TABLE leases ADD COLUMN revision TEXT"


class LeaseConflict(AsfdaError):
    """The case is leased to another annotator (HTTP 409)."""


@dataclass
class Lease:
    case_id: str
    annotator: str
    leased_at: str
    expires_at: str  # ISO time, for people and clients
    # The case's current final label when granted (None: unlabelled), so the client knows what it opens.
    revision: Optional[str] = None
    revision_author: Optional[str] = None
    label_changed: bool = False  # a renewal found another revision than the one the lease was granted on


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _lease(row, current: Optional[Revision] = None, changed: bool = False) -> Lease:
    return Lease(
        row["case_id"],
        row["annotator"],
        row["leased_at"],
        _iso(row["expires"]),
        current.revision if current else row["revision"],
        author_of(current) if current else None,
        changed,
    )


def active_leased_cases(db_path: Path, now: Optional[float] = None) -> List[str]:
    """Cases under an unexpired lease (a label may be in progress); [] when no lease table exists yet."""
    with connect(Path(db_path)) as db:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'").fetchone()
        if not exists:
            return []
        rows = db.execute("SELECT case_id FROM leases WHERE expires > ?", (now or time.time(),)).fetchall()
    return [r["case_id"] for r in rows]


class LeaseBook:
    def __init__(self, db_path: Path, clock: Callable[[], float] = time.time, root: Optional[Path] = None):
        """`root`: the datastore folder (default: the database's folder), whose label revisions a lease reports."""
        self.path, self.clock = Path(db_path), clock
        self.revisions = LabelRevisions(Path(root) if root is not None else self.path.parent, self.path)
        with connect(self.path) as db:
            db.executescript(_SCHEMA)
            if "revision" not in {r["name"] for r in db.execute("PRAGMA table_info(leases)")}:
                try:
                    db.execute(_REVISION_COLUMN)
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    # -- inside a transaction -------------------------------------------------------------------

    def _log(self, db, case_id: str, annotator: Optional[str], action: str, model_version=None, **detail) -> None:
        db.execute(
            "INSERT INTO audit (case_id, at, annotator, action, model_version, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (case_id, utc_now(), annotator, action, model_version, json.dumps(detail) if detail else None),
        )

    def _sweep(self, db, now: float) -> None:
        for row in db.execute("SELECT * FROM leases WHERE expires <= ?", (now,)).fetchall():
            self._log(db, row["case_id"], row["annotator"], "lease expired")
        db.execute("DELETE FROM leases WHERE expires <= ?", (now,))

    def _grant(self, db, case_id: str, annotator: str, lease_s: float, now: float) -> Lease:
        held = db.execute("SELECT * FROM leases WHERE case_id = ?", (case_id,)).fetchone()
        if held and held["annotator"] != annotator:
            raise LeaseConflict(f"case {case_id!r} is leased to {held['annotator']} until {_iso(held['expires'])}")
        leased_at = held["leased_at"] if held else utc_now()
        current = self.revisions.current_in(db, case_id)
        revision = current.revision if current else None
        changed = bool(held) and held["revision"] != revision
        db.execute(
            "INSERT OR REPLACE INTO leases (case_id, annotator, leased_at, expires, revision) VALUES (?, ?, ?, ?, ?)",
            (case_id, annotator, leased_at, now + float(lease_s), revision),
        )
        detail: Dict[str, Any] = {"lease_s": float(lease_s)}
        if current is not None:  # a lease on a labelled case says which label it opens
            detail.update(final_revision=revision, revision_author=author_of(current))
        if changed:
            detail["label_changed_from"] = held["revision"]
        self._log(db, case_id, annotator, "lease renewed" if held else "leased", **detail)
        return _lease(db.execute("SELECT * FROM leases WHERE case_id = ?", (case_id,)).fetchone(), current, changed)

    def _transaction(self, work):
        with connect(self.path) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db, self.clock())
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    # -- public ---------------------------------------------------------------------------------

    def take_next(self, annotator: str, candidates: Iterable[str], lease_s: float = DEFAULT_LEASE_S) -> Optional[Lease]:
        """The annotator's current case if they hold one (renewed), else the first free candidate, leased."""
        candidates = list(candidates)

        def work(db, now):
            self._sweep(db, now)
            mine = db.execute(
                "SELECT case_id FROM leases WHERE annotator = ? ORDER BY leased_at LIMIT 1", (annotator,)
            ).fetchone()
            if mine:
                return self._grant(db, mine["case_id"], annotator, lease_s, now)
            taken = {r["case_id"] for r in db.execute("SELECT case_id FROM leases").fetchall()}
            for case_id in candidates:
                if case_id not in taken:
                    return self._grant(db, case_id, annotator, lease_s, now)
            return None

        return self._transaction(work)

    def take(self, case_id: str, annotator: str, lease_s: float = DEFAULT_LEASE_S) -> Lease:
        """Lease (or renew) one named case; LeaseConflict when another annotator holds it."""

        def work(db, now):
            self._sweep(db, now)
            return self._grant(db, case_id, annotator, lease_s, now)

        return self._transaction(work)

    def release(self, case_id: str, annotator: Optional[str], force: bool = False) -> bool:
        """End a lease; only its holder may, unless `force` (an administrator). False when none was held."""

        def work(db, now):
            self._sweep(db, now)
            held = db.execute("SELECT * FROM leases WHERE case_id = ?", (case_id,)).fetchone()
            if not held:
                return False
            if held["annotator"] != annotator and not force:
                raise LeaseConflict(f"case {case_id!r} is leased to {held['annotator']}, not to {annotator}")
            db.execute("DELETE FROM leases WHERE case_id = ?", (case_id,))
            self._log(db, case_id, annotator, "released", holder=held["annotator"])
            return True

        return self._transaction(work)

    def check_submit_in(self, db, case_id: str, annotator: Optional[str], now: float) -> None:
        """Inside the submit's transaction: refuse while another annotator holds a live lease, and refuse a
        submitter whose own lease lapsed when someone else submitted a label of the case since."""
        self._sweep(db, now)
        held = db.execute("SELECT * FROM leases WHERE case_id = ?", (case_id,)).fetchone()
        if held and held["annotator"] != annotator:
            raise LeaseConflict(
                f"case {case_id!r} is leased to {held['annotator']} until {_iso(held['expires'])}; "
                "ask them to release it"
            )
        if held or annotator is None:
            return
        last = db.execute(
            "SELECT seq, action FROM audit WHERE case_id = ? AND annotator = ? AND action IN"
            " ('leased', 'lease renewed', 'lease expired', 'released', 'label submitted') ORDER BY seq DESC LIMIT 1",
            (case_id, annotator),
        ).fetchone()
        if last is None or last["action"] != "lease expired":
            return
        since = db.execute(
            "SELECT annotator, at FROM audit WHERE case_id = ? AND seq > ? AND action = 'label submitted'"
            " AND annotator IS NOT ? ORDER BY seq DESC LIMIT 1",
            (case_id, last["seq"], annotator),
        ).fetchone()
        if since:
            raise LeaseConflict(
                f"the lease of {annotator} on case {case_id!r} expired and {since['annotator'] or 'an unnamed author'} "
                f"submitted a label at {since['at']}; nothing was stored: open the case again"
            )

    def check_may_submit(self, case_id: str, annotator: Optional[str]) -> None:
        """A label may come from the lease holder, or from anyone while the case is not leased (see check_submit_in)."""
        self._transaction(lambda db, now: self.check_submit_in(db, case_id, annotator, now))

    def submitted_in(self, db, case_id: str, annotator: Optional[str], model_version: Optional[str], **detail) -> None:
        """Inside the submit's transaction: record the stored label and end the submitter's lease on the case."""
        db.execute("DELETE FROM leases WHERE case_id = ? AND annotator IS ?", (case_id, annotator))
        self._log(db, case_id, annotator, "label submitted", model_version, **detail)

    def submitted(self, case_id: str, annotator: Optional[str], model_version: Optional[str], **detail) -> None:
        """Record a stored label and end the submitter's lease on the case."""
        self._transaction(lambda db, now: self.submitted_in(db, case_id, annotator, model_version, **detail))

    def record(self, case_id: str, annotator: Optional[str], action: str, model_version=None, **detail) -> None:
        self._transaction(lambda db, now: self._log(db, case_id, annotator, action, model_version, **detail))

    def holder(self, case_id: str) -> Optional[Lease]:
        with connect(self.path) as db:
            row = db.execute(
                "SELECT * FROM leases WHERE case_id = ? AND expires > ?", (case_id, self.clock())
            ).fetchone()
        return _lease(row) if row else None

    def leases(self) -> Dict[str, Lease]:
        with connect(self.path) as db:
            rows = db.execute("SELECT * FROM leases WHERE expires > ? ORDER BY case_id", (self.clock(),)).fetchall()
        return {r["case_id"]: _lease(r) for r in rows}

    def audit(self, case_id: str) -> List[Dict[str, Any]]:
        with connect(self.path) as db:
            rows = db.execute("SELECT * FROM audit WHERE case_id = ? ORDER BY seq", (case_id,)).fetchall()
        return [
            {
                "at": r["at"],
                "annotator": r["annotator"],
                "action": r["action"],
                "model_version": r["model_version"],
                "detail": json.loads(r["detail"]) if r["detail"] else {},
            }
            for r in rows
        ]


def lease_fields(lease: Optional[Lease]) -> Dict[str, Any]:
    """The lease columns of a case list (who holds the case, until when)."""
    return {"leased_by": lease.annotator, "lease_expires_at": lease.expires_at} if lease else {}
