"""One writer at a time on a datastore: the worker holds this lock for its lifetime, each CLI engine command
(rank, infer, adapt, model import/activate, label submit) for its run.

A second writer is refused in one line naming the holder (its command and pid), instead of two processes
publishing versions, flipping ACTIVE or cleaning up each other's half-written files at the same time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Optional

from asfda.core.atomic import atomic_write_text
from asfda.core.errors import DatastoreBusy
from asfda.core.file_lock import open_lock_file, try_lock

LOCK_FILE = ".worker.lock"  # the name the worker has always locked, so older workers exclude CLI writers too
HOLDER_FILE = ".writer.json"  # who holds the lock: a separate file, since a locked byte cannot be read on Windows


@dataclass
class Holder:
    pid: int
    command: str
    since: str

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid}, since {self.since})"


def current_holder(root: Path) -> Optional[Holder]:
    """The recorded holder, whether or not it still holds the lock (None when unreadable)."""
    try:
        return Holder(**json.loads((Path(root) / HOLDER_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


class DatastoreLock:
    """The held lock; `close()` (or leaving the `with` block) releases it."""

    def __init__(self, root: Path, handle: IO):
        self.root, self._handle = Path(root), handle

    def close(self) -> None:
        if self._handle is None:
            return
        holder = current_holder(self.root)
        if holder is not None and holder.pid == os.getpid():
            (self.root / HOLDER_FILE).unlink(missing_ok=True)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> DatastoreLock:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def lock_datastore(root: Path, command: str) -> DatastoreLock:
    """Take the datastore's writer lock for `command` (e.g. "asfda worker", "asfda adapt") or refuse.

    Raises:
        DatastoreBusy: another process holds it; the message names that process.
    """
    root = Path(root)
    handle = open_lock_file(root / LOCK_FILE)
    if not try_lock(handle):
        handle.close()
        holder = current_holder(root)
        who = holder.describe() if holder else "another process (an asfda worker or command)"
        raise DatastoreBusy(
            f"the datastore {root} is in use by {who}: wait until it finishes, or stop it, and try again"
        )
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(root / HOLDER_FILE, json.dumps(Holder(os.getpid(), command, since).__dict__))
    return DatastoreLock(root, handle)
