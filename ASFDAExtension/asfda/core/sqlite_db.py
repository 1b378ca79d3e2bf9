"""How every part of asfda opens its SQLite database."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    # One short-lived connection per operation: safe across threads and processes. WAL keeps readers
    # unblocked while a writer commits; synchronous=FULL makes an acknowledged commit survive SIGKILL
    # and power loss. Autocommit mode (isolation_level=None): callers open BEGIN IMMEDIATE themselves.
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.row_factory = sqlite3.Row
        yield db
    finally:
        db.close()
