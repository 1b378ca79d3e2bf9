"""The one queue that owns the GPU: a thread that runs jobs one at a time, each in a child process.

Order: interactive inference, then ranking, then adaptation, then advisory verdicts (then submission order).
The child only computes and reports; this thread decides the final state and, for adaptation, flips the active
model after the child exited cleanly - so a cancelled, crashed or killed job never changes ACTIVE.

A running verdict job (deferred, idempotent: it only attaches a verdict to a version already published and
active) is killed and requeued as soon as any other job is queued, so a clinician's request never waits
behind it; it starts again from the beginning afterwards. A rank steps aside by itself between chunks.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from asfda.models.store import ModelStore
from asfda.worker.job import EXIT_OK, EXIT_YIELDED, log_path
from asfda.worker.jobstore import CANCELLED, FAILED, PRIORITY, RUNNING, SUCCEEDED, JobStore
from asfda.worker.processes import kill_tree, log_tail, spawn_child

log = logging.getLogger("asfda.worker")
IDLE_POLL_S = 1.0
CHILD_POLL_S = 0.1
PREEMPT_POLL_S = 0.25  # how often a running verdict job looks for a queued job it must make way for
PREEMPTIBLE = ("verdict",)  # kinds that may be killed and requeued: nothing of theirs is lost but time


class JobRunner:
    def __init__(self, datastore: Path, jobs: JobStore, models: ModelStore, device: str):
        self.datastore, self.jobs, self.models, self.device = Path(datastore), jobs, models, device
        self._lock = threading.Lock()  # guards claim/spawn/finish against cancel
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._current: Optional[tuple] = None  # (job_id, Popen) of the running job
        self._spare: Optional[subprocess.Popen] = None
        self._thread = threading.Thread(target=self._loop, name="asfda-job-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, kind: str, params: Dict[str, Any], exclusive: bool = False) -> Dict[str, Any]:
        job = self.jobs.submit(kind, params, exclusive=exclusive)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job["state"] in (RUNNING, "queued"):
                self.jobs.request_cancel(job_id)
                if self._current and self._current[0] == job_id:
                    kill_tree(self._current[1].pid)
                self.jobs.finish(job_id, CANCELLED, error="cancelled by user")
        return self.jobs.get(job_id)

    def stop(self) -> None:
        """Worker shutdown: the running job cannot outlive us; mark it failed and kill it."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            if self._current:
                self.jobs.finish(self._current[0], FAILED, error="worker stopped while the job ran")
                kill_tree(self._current[1].pid)
            if self._spare is not None:
                kill_tree(self._spare.pid)
                self._spare = None
        self._thread.join(timeout=15)

    # -- the runner thread -------------------------------------------------------------------

    def _loop(self) -> None:
        self._spare = self._spawn_spare()
        while not self._stopping.is_set():
            job = self.jobs.next_queued()
            if job is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                self._run(job)
            except Exception:  # the queue must survive any single job's trouble
                log.exception("job %s: runner error", job["job_id"])
                self.jobs.finish(job["job_id"], FAILED, error="worker error while running the job (see worker log)")

    def _spawn_spare(self) -> Optional[subprocess.Popen]:
        if self._stopping.is_set():
            return None
        return spawn_child(self.datastore, self.device)

    def _start_child(self, job_id: str) -> subprocess.Popen:
        spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is None:
            try:
                spare.stdin.write(f"{job_id}\n".encode())
                spare.stdin.close()
                return spare
            except OSError:  # the spare died since it started: fall back to a fresh child
                kill_tree(spare.pid)
        return spawn_child(self.datastore, self.device, job_id)

    def _run(self, job: Dict[str, Any]) -> None:
        job_id = job["job_id"]
        with self._lock:
            if self._stopping.is_set() or not self.jobs.claim(job_id):
                return  # cancelled meanwhile
            child = self._start_child(job_id)
            self.jobs.set_pid(job_id, child.pid)
            self._current = (job_id, child)
        log.info("job %s (%s) started in process %s", job_id, job["kind"], child.pid)
        # The next job's child warms up while this one runs, so back-to-back jobs start at once.
        self._spare = self._spawn_spare()
        code = self._wait(job, child)
        with self._lock:
            self._current = None
            self._finish(job_id, code)

    def _wait(self, job: Dict[str, Any], child: subprocess.Popen) -> int:
        """The child's exit code; a preemptible job's child is killed when other work queues (EXIT_YIELDED)."""
        preemptible = job["kind"] in PREEMPTIBLE
        poll_s = PREEMPT_POLL_S if preemptible else CHILD_POLL_S
        while True:
            try:
                return child.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                if not preemptible or not self.jobs.interactive_waiting(PRIORITY[job["kind"]]):
                    continue
            with self._lock:
                if self._current is None or self._current[0] != job["job_id"]:
                    return child.wait()  # cancelled or stopped meanwhile: that state stands
                kill_tree(child.pid)
            log.info("job %s (%s) stopped to let queued work go first", job["job_id"], job["kind"])
            child.wait()
            return EXIT_YIELDED

    def _finish(self, job_id: str, code: int) -> None:
        job = self.jobs.get(job_id)
        if job is None or job["state"] != RUNNING:
            return  # cancelled or stopped while it ran: that state stands
        if code == EXIT_YIELDED and self.jobs.requeue(job_id):
            log.info("job %s stepped aside for interactive work; requeued", job_id)
            return
        if code == EXIT_OK and job["result"] is not None:
            result = dict(job["result"])
            if job["kind"] == "adapt":
                gate = result.get("gate") or {}
                result["activated"] = bool(gate.get("activate", True))  # the validation gate's verdict
                result["reason"] = gate.get("reason", "")
                if result["activated"]:
                    # Compare-and-swap against the job's parent: a rollback made while it ran stands.
                    not_activated = self.models.activate_over_parent(result["version"])
                    if not_activated:
                        result.update(activated=False, reason=not_activated, not_activated=not_activated)
                result["active_version"] = self.models.active_version()
                if gate.get("pending"):  # the model first: its advisory verdict runs after anything interactive
                    verdict = self.jobs.submit("verdict", {**job["params"], "version": result["version"]})
                    result["verdict_job_id"] = verdict["job_id"]
            self.jobs.finish(job_id, SUCCEEDED, result=result, from_states=(RUNNING,))
            log.info("job %s succeeded", job_id)
            return
        error = job["error"] or f"job process ended with exit code {code}"
        if not job["error"]:
            tail = log_tail(log_path(self.datastore, job_id))
            error += f": {tail}" if tail else ""
        self.jobs.finish(job_id, FAILED, error=error, from_states=(RUNNING,))
        log.warning("job %s failed: %s", job_id, error)
