"""Start-up: one worker per datastore, and the clean-up after a worker that was killed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, List

from asfda.core.errors import AsfdaError
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_revisions import LabelRevisions
from asfda.data.label_submit import reconcile_seg_outbox
from asfda.worker.jobstore import JobStore
from asfda.worker.processes import is_job_child, kill_tree

log = logging.getLogger("asfda.worker")
RESTART_REASON = "worker restarted: the job was interrupted"


def uploads_dir(store: Datastore) -> Path:
    return store.root / ".uploads"


def lock_datastore(root: Path) -> IO:
    """Hold an exclusive lock for the worker's lifetime; the OS drops it when the process dies."""
    handle = open(Path(root) / ".worker.lock", "a+")
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise AsfdaError(f"another worker is already serving the datastore {root}") from None
    return handle


def recover(store: Datastore, jobs: JobStore) -> List[str]:
    """Fail jobs a dead worker left behind, kill their children, remove half-written files."""
    interrupted = jobs.fail_unfinished(RESTART_REASON)
    for job in interrupted:
        # Children watch their parent and exit on their own; this covers one that has not noticed yet.
        if job["state"] == "running" and is_job_child(job["pid"]):
            kill_tree(job["pid"])
    store.models.cleanup_staging()
    finished = LabelRevisions(store.root, store.state.path).recover()
    if finished:
        log.warning("recovered: finished replacing the current label of %s", ", ".join(finished))
    segs = reconcile_seg_outbox(store)
    if segs:
        log.warning("recovered: queued the SEG write-back of %s", ", ".join(segs))
    removed = []
    folder = uploads_dir(store)
    folder.mkdir(exist_ok=True)
    leftovers = list(folder.iterdir())
    # Temp files of atomic writes (labels, predictions, the ACTIVE pointer) interrupted before their rename.
    for parent in [store.label_dir(tag) for tag in LabelTag] + [store.models.root]:
        leftovers += [p for p in parent.glob(".*.tmp*") if p.is_file()]
    for path in leftovers:
        try:
            path.unlink()
            removed.append(str(path))
        except OSError:
            pass
    if interrupted or removed:
        log.warning("recovered: %d interrupted job(s) failed, %d temp file(s) removed", len(interrupted), len(removed))
    return [job["job_id"] for job in interrupted]
