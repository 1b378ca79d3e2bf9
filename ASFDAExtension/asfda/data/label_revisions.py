"""Revisions of a case's clinician label: every accepted label kept, the current one at labels/final/CASE.nii.gz.

A revision is a row of `label_revisions` in asfda.db (case, revision id, author, time, the model version the
label was made against, its source, its file, sha256) and a file labels/final/history/CASE/REV.nii.gz that is
never replaced. The current label is a copy of the latest revision's file. A row is written (with
`applied = 0`) before the current file is replaced; `apply` copies the latest revision over the current file
under the database's write lock and marks it applied, so a crash between the two is finished at the next
start (`recover`) and two submitters can never leave an older revision current.

A final label written before revisions existed (or copied in by hand) becomes an `adopted` revision the
first time anything asks for the case's current revision.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from asfda.core.atomic import atomic_write_with, fsync_dir
from asfda.core.case_ids import validate_case_id
from asfda.core.checksums import sha256_file
from asfda.core.errors import AsfdaError
from asfda.core.file_identity import stat_identity
from asfda.core.sqlite_db import connect
from asfda.data.state import utc_now

HAND_PLACED = "hand-placed"  # a file copied into labels/final/ by hand, taken in by the check before a rank/adapt
SOURCES = ("upload", "cli", "slicer", "simulated", "adopted", HAND_PLACED)  # simulated: the demo's/bench's annotator
HISTORY = "history"  # labels/final/history/<case>/<revision>.nii.gz
SUFFIX = ".nii.gz"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_revisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    author TEXT,
    created TEXT NOT NULL,
    model_version TEXT,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    seg TEXT,  -- the PACS write-back: NULL not decided yet (a crash came first), 'queued', 'none'
    final_stat TEXT,  -- stat_identity of labels/final/CASE.nii.gz as this revision's replace left it
    UNIQUE (case_id, revision)
);
CREATE INDEX IF NOT EXISTS label_revisions_by_case ON label_revisions (case_id, seq);
"""


class RevisionConflict(AsfdaError):
    """The label changed since the submitter opened it (HTTP 409); the message names both authors."""


@dataclass(frozen=True)
class Revision:
    case_id: str
    revision: str
    author: Optional[str]
    created: str
    model_version: Optional[str]
    source: str
    path: str  # relative to the datastore root
    sha256: str

    def fields(self) -> Dict[str, Any]:
        return asdict(self)


def _revision(row: sqlite3.Row) -> Revision:
    return Revision(
        row["case_id"],
        row["revision"],
        row["author"],
        row["created"],
        row["model_version"],
        row["source"],
        row["path"],
        row["sha256"],
    )


def author_of(revision: Optional[Revision]) -> str:
    """How a message names whoever made a revision."""
    if revision is None:
        return "nobody"
    if revision.author:
        return revision.author
    unnamed = {"adopted": "an earlier label", HAND_PLACED: "a label copied in by hand"}
    return unnamed.get(revision.source, "an unnamed author")


class LabelRevisions:
    """The revisions of one datastore; the `*_in` methods run on the caller's connection, inside its transaction."""

    def __init__(self, root: Path, db_path: Optional[Path] = None):
        self.root = Path(root)
        self.db_path = Path(db_path) if db_path is not None else self.root / "asfda.db"
        with connect(self.db_path) as db:
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(label_revisions)")}
            if "final_stat" not in columns:  # a datastore from before: its rows fall back to the time check
                db.execute("ALTER TABLE label_revisions ADD COLUMN final_stat TEXT")

    # -- paths ----------------------------------------------------------------------------------

    @property
    def final_dir(self) -> Path:
        return self.root / "labels" / "final"

    def final_path(self, case_id: str) -> Path:
        return self.final_dir / f"{validate_case_id(case_id)}{SUFFIX}"

    def history_dir(self, case_id: str) -> Path:
        return self.final_dir / HISTORY / validate_case_id(case_id)

    def file_of(self, revision: Revision) -> Path:
        return self.root / revision.path

    # -- inside a transaction -------------------------------------------------------------------

    def latest_in(self, db: sqlite3.Connection, case_id: str) -> Optional[sqlite3.Row]:
        return db.execute(
            "SELECT * FROM label_revisions WHERE case_id = ? ORDER BY seq DESC LIMIT 1", (case_id,)
        ).fetchone()

    def recorded_in(self, db: sqlite3.Connection, case_id: str) -> Optional[Revision]:
        """The latest recorded revision, whatever the final file holds now (a file copied over it by hand is
        being submitted as the next one, not adopted first)."""
        latest = self.latest_in(db, case_id)
        return None if latest is None else _revision(latest)

    def current_in(self, db: sqlite3.Connection, case_id: str) -> Optional[Revision]:
        """The revision the current final file holds; adopts a final file no revision describes.

        None when the case has no final label (never labelled, or its file was removed by hand)."""
        latest = self.latest_in(db, case_id)
        final = self.final_path(case_id)
        if latest is not None and not latest["applied"]:
            self._replace_final_in(db, case_id, latest)  # a crash between commit and replace: finish it
            return _revision(latest)
        if not final.is_file():
            return None
        if latest is not None and sha256_file(final) == latest["sha256"]:
            return _revision(latest)
        return self._adopt_in(db, case_id, final)

    def _adopt_in(self, db: sqlite3.Connection, case_id: str, final: Path) -> Revision:
        record = db.execute(
            "SELECT author, created, model_version FROM labels WHERE case_id = ? AND tag = 'final'", (case_id,)
        ).fetchone()
        revision = self.next_id_in(db, case_id)
        target = self.history_dir(case_id) / f"{revision}{SUFFIX}"
        atomic_write_with(target, lambda tmp: shutil.copyfile(final, tmp))
        fsync_dir(target.parent.parent)
        return self.insert_in(
            db,
            case_id,
            revision,
            target,
            author=record["author"] if record else None,
            created=record["created"] if record else None,
            model_version=record["model_version"] if record else None,
            source="adopted",
            applied=True,
            seg="none",  # not a submit: nothing to write back
        )

    def next_id_in(self, db: sqlite3.Connection, case_id: str) -> str:
        count = db.execute("SELECT COUNT(*) AS n FROM label_revisions WHERE case_id = ?", (case_id,)).fetchone()["n"]
        return f"r{int(count) + 1:04d}"

    def insert_in(
        self,
        db: sqlite3.Connection,
        case_id: str,
        revision: str,
        file: Path,
        author: Optional[str],
        model_version: Optional[str],
        source: str,
        created: Optional[str] = None,
        applied: bool = False,
        seg: Optional[str] = None,
    ) -> Revision:
        """Record a revision whose file is already durable at `file` (under history/)."""
        if source not in SOURCES:
            raise AsfdaError(f"unknown label source {source!r} (expected one of {', '.join(SOURCES)})")
        db.execute(
            "INSERT INTO label_revisions (case_id, revision, author, created, model_version, source, path, sha256,"
            " applied, seg) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case_id,
                revision,
                author,
                created or utc_now(),
                model_version,
                source,
                file.relative_to(self.root).as_posix(),
                sha256_file(file),
                int(applied),
                seg,
            ),
        )
        return _revision(self.latest_in(db, case_id))

    def _replace_final_in(self, db: sqlite3.Connection, case_id: str, row: sqlite3.Row) -> None:
        # With the write lock held, so no other writer sees the copy without the mark; a crash before the
        # commit leaves the mark unset and the copy is simply made again.
        source, final = self.root / row["path"], self.final_path(case_id)
        atomic_write_with(final, lambda tmp: shutil.copyfile(source, tmp))
        db.execute("UPDATE label_revisions SET applied = 1 WHERE case_id = ? AND seq <= ?", (case_id, row["seq"]))
        # What this replace left: a file copied over it later (by hand, even with `cp -p`) no longer matches.
        db.execute("UPDATE label_revisions SET final_stat = ? WHERE seq = ?", (stat_identity(final), row["seq"]))

    # -- own transactions -----------------------------------------------------------------------

    def _transaction(self, work):
        with connect(self.db_path) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    def apply(self, case_id: str) -> Optional[Revision]:
        """Make the final file hold the case's latest revision (idempotent); the current revision."""
        return self._transaction(lambda db: self.current_in(db, case_id))

    def current(self, case_id: str) -> Optional[Revision]:
        return self.apply(case_id)

    def recover(self) -> List[str]:
        """At the worker's start (no other writer yet): remove temp files of interrupted writes, then finish
        every replace a crash interrupted."""
        history = self.final_dir / HISTORY
        if history.is_dir():
            for leftover in history.glob("*/.*.tmp*"):
                leftover.unlink(missing_ok=True)
        return self.finish_interrupted()

    def finish_interrupted(self) -> List[str]:
        """Finish every replace a crash interrupted; safe while other processes submit (a job child before it
        reads labels): it touches no temp file, since a live submit's is indistinguishable from a dead one's."""
        with connect(self.db_path) as db:
            cases = [r["case_id"] for r in db.execute("SELECT DISTINCT case_id FROM label_revisions WHERE applied = 0")]
        for case_id in cases:
            self.apply(case_id)
        return cases

    def revisions(self, case_id: str) -> List[Revision]:
        """Every revision of a case, oldest first (adopting an unrecorded final file first)."""

        def work(db):
            self.current_in(db, case_id)
            rows = db.execute("SELECT * FROM label_revisions WHERE case_id = ? ORDER BY seq", (case_id,)).fetchall()
            return [_revision(r) for r in rows]

        return self._transaction(work)

    def mark_seg(self, case_id: str, revision: str, state: str) -> None:
        with connect(self.db_path) as db:
            db.execute(
                "UPDATE label_revisions SET seg = ? WHERE case_id = ? AND revision = ?", (state, case_id, revision)
            )

    def seg_undecided(self) -> List[Revision]:
        """Latest revisions whose SEG write-back was never decided: the submit died after its commit."""
        with connect(self.db_path) as db:
            rows = db.execute(
                "SELECT * FROM label_revisions WHERE seg IS NULL AND seq IN"
                " (SELECT MAX(seq) FROM label_revisions GROUP BY case_id) ORDER BY seq"
            ).fetchall()
        return [_revision(r) for r in rows]

    def latest_written(self) -> Dict[str, tuple]:
        """case id -> (latest revision, its sha256, the final file's stat_identity its replace left, or None
        for a revision adopted from a file found there or recorded before stats were kept); no adoption."""
        with connect(self.db_path) as db:
            rows = db.execute(
                "SELECT case_id, revision, sha256, final_stat FROM label_revisions WHERE seq IN"
                " (SELECT MAX(seq) FROM label_revisions GROUP BY case_id)"
            ).fetchall()
        return {r["case_id"]: (r["revision"], r["sha256"], r["final_stat"]) for r in rows}

    def current_ids(self, with_sha: bool = False) -> Dict[str, Any]:
        """case id -> its latest revision id (or (id, sha256)), for lists: a read-only view, no adoption."""
        with connect(self.db_path) as db:
            rows = db.execute(
                "SELECT case_id, revision, sha256 FROM label_revisions WHERE seq IN"
                " (SELECT MAX(seq) FROM label_revisions GROUP BY case_id)"
            ).fetchall()
        return {r["case_id"]: (r["revision"], r["sha256"]) if with_sha else r["revision"] for r in rows}


def place_history_file(staged: Path, target: Path) -> None:
    """Move a durable staged file to its history name and make the rename durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    fsync_dir(target.parent)
