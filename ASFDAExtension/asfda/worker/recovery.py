"""Start-up clean-up after a worker that was killed (the one-writer lock is asfda.data.writer_lock)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_revisions import LabelRevisions
from asfda.data.label_submit import reconcile_seg_outbox
from asfda.worker.jobstore import JobStore
from asfda.worker.processes import is_job_child, kill_tree

log = logging.getLogger("asfda.worker")
RESTART_REASON = "worker restarted: the job was interrupted"


def uploads_dir(store: Datastore) -> Path:
    return store.root / ".uploads"


def recover(store: Datastore, jobs: JobStore) -> List[str]:
    """Fail jobs a dead worker left behind, kill their children, remove half-written files."""
    interrupted = jobs.fail_unfinished(RESTART_REASON)
    for job in interrupted:
        # Children watch their parent and exit on their own; this covers one that has not noticed yet.
        # Only a child of this datastore: after pid reuse the pid may be another datastore's job.
        if job["state"] == "running" and is_job_child(job["pid"], store.root):
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
