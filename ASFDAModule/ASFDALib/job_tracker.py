"""The rank job and the adapt job this Slicer follows: requested, running, finished, and which one to cancel.

Pure Python state on the GUI thread, fed only by worker replies (``GET /jobs`` and the job a request returned),
so it is tested without Slicer. Each kind is followed apart: cancelling the adaptation names only the adapt
job, never a rank that runs beside it (issue 20: one Cancel cancelled both).
"""

from dataclasses import dataclass, field
from typing import Dict, List

from .poller import CachedPoller
from .worklist import JobProgress, JobState

PENDING = "pending"  # a job request is in flight; its id is not known yet
KINDS = ("rank", "adapt")
POLL_INTERVAL_S = 1.0


@dataclass
class JobsUpdate:
    """What one ``GET /jobs`` reply changed: the newest job of each kind, and the jobs that just ended."""

    latest: Dict[str, JobProgress] = field(default_factory=dict)
    finished: List[JobProgress] = field(default_factory=list)


class JobTracker:
    def __init__(self):
        self.poller = None  # CachedPoller of GET /jobs on the connected worker
        self.reset()

    def reset(self):
        """Another worker (or none): nothing it runs is known yet; its past jobs are not news."""
        self.jobIds = {kind: None for kind in KINDS}  # None: none running; PENDING; else the worker's job id
        self._announced = set()
        self._primed = False

    def follow(self, client):
        """Follow the jobs of a newly connected worker; returns the poller of its ``GET /jobs``."""
        self.reset()
        self.poller = CachedPoller(client.jobs, intervalS=POLL_INTERVAL_S)
        return self.poller

    def stop(self):
        """The worker is gone (stopped): nothing to follow."""
        self.reset()
        self.poller = None

    # -- requests ----------------------------------------------------------------------------

    def canStart(self, kind):
        return self.jobIds[kind] is None

    def requested(self, kind):
        """A request for a ``kind`` job is in flight: its button stays disabled until the worker answers."""
        self.jobIds[kind] = PENDING

    def requestFailed(self, kind):
        if self.jobIds[kind] == PENDING:
            self.jobIds[kind] = None

    def started(self, job):
        """The worker accepted a job (its reply to ``POST /rank`` or ``POST /adapt``)."""
        kind = job.get("kind")
        if kind in self.jobIds:
            self.jobIds[kind] = str(job["job_id"])

    def running(self, kind):
        """The id of the ``kind`` job the worker runs for us, None when none (or its id is not known yet)."""
        jobId = self.jobIds[kind]
        return None if jobId in (None, PENDING) else jobId

    def cancelRequest(self, kind, client):
        """A call for a background thread cancelling only our running ``kind`` job; None when none runs."""
        jobId = self.running(kind)
        return None if jobId is None else (lambda: client.cancelJob(jobId))

    # -- worker replies ----------------------------------------------------------------------

    def update(self, jobs):
        """Follow a ``GET /jobs`` reply (newest first); returns the newest job of each kind and those that ended.

        Jobs that had ended before the first reply are history, not news to announce. A finished older job
        does not clear a request still in flight (PENDING).
        """
        if not self._primed:
            self._announced.update(str(j["job_id"]) for j in jobs if JobState(j["state"]).finished)
            self._primed = True
        update = JobsUpdate()
        for job in jobs:
            kind = job.get("kind")
            if kind in self.jobIds and kind not in update.latest:
                update.latest[kind] = JobProgress.fromReply(job)
        for kind, progress in update.latest.items():
            if not (progress.state.finished and self.jobIds[kind] == PENDING):
                self.jobIds[kind] = None if progress.state.finished else progress.jobId
            if progress.state.finished and progress.jobId not in self._announced:
                self._announced.add(progress.jobId)
                update.finished.append(progress)
        return update
