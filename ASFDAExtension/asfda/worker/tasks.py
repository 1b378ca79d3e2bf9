"""What each job kind does, run inside the job child process (never in the API process)."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

from asfda.data.datastore import Datastore
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings
from asfda.worker.jobstore import PRIORITY, JobStore

# Progress rows are written at most this often (plus at every phase change and at the end of a phase).
PROGRESS_INTERVAL_S = 0.25


class ProgressReporter:
    """Engine progress callback -> structured events (phase, step, total, metric, eta_s) in the jobs table."""

    def __init__(self, jobs: JobStore, job_id: str):
        self.jobs, self.job_id = jobs, job_id
        self.phase: Optional[str] = None
        self.phase_start = (0.0, 0)  # (time, step) when the current phase was first seen
        self.last_write = 0.0

    def __call__(self, phase: str, step: int, total: int, metric: Optional[float] = None) -> None:
        now = time.monotonic()
        if phase != self.phase:
            self.phase, self.phase_start, self.last_write = phase, (now, step), 0.0
        started_at, first_step = self.phase_start
        eta = None
        if step > first_step and total:
            eta = (now - started_at) / (step - first_step) * max(total - step, 0)
        if now - self.last_write >= PROGRESS_INTERVAL_S or step >= total or self.last_write == 0.0:
            self.last_write = now
            event = {"phase": phase, "step": int(step), "total": int(total), "metric": metric, "eta_s": eta}
            self.jobs.report_progress(self.job_id, event)


def _session(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> LoopSession:
    return LoopSession(store, SessionSettings.from_params(params, device), progress)


def run_infer(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    session = _session(store, params, device, progress)
    progress("infer", 0, 1)
    session.infer([params["case_id"]])
    progress("infer", 1, 1)
    return {
        "case_id": params["case_id"],
        "model_version": store.models.active_version(),
        "precision": session.precision.value,
    }


def run_rank(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    session = _session(store, params, device, progress)
    request = RankRequest.from_params(params)
    # Between chunks an Infer request (a clinician waiting on a case) goes first; the rank resumes after it.
    outcome = session.rank(request, should_yield=lambda: progress.jobs.interactive_waiting(PRIORITY["rank"]))
    result = {
        "strategy": request.strategy,
        "budget_k": request.k,
        "model_version": outcome.model_version,
        "ranked": len(outcome.ranked),
        "selected": [r.case_id for r in outcome.ranked if r.selected],
        "scored": outcome.scored,
        "cached": outcome.cached,
        "skipped": outcome.errors,
        "precision": outcome.precision,
        "warnings": outcome.warnings,
        "labels_taken_in": session.taken_in,
        "requested_slices": {c: slices.to_dict() for c, slices in outcome.requested_slices.items()},
    }
    if session.pool_scorer() is not None:
        result["ray"] = session.pool_scorer().report.as_dict()  # actors, retries, actor deaths
    return result


def run_adapt(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    session = _session(store, params, device, progress)
    # activate=False: only the supervising worker flips ACTIVE, after it saw this process succeed, so a
    # cancelled or killed run can never change the active model.
    result = session.adapt(AdaptRequest.from_params(params), activate=False)
    return {
        "version": result.version,
        "parent": result.parent,
        "metrics": result.metrics,
        "pseudo_cases": result.pseudo_cases,
        "gate": result.gate,  # the supervising worker activates the version only if the gate passed
        "labels_taken_in": session.taken_in,
        "skipped": session.duplicates,
    }


def run_verdict(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    """The advisory verdict of a version an adapt job published first (queued by the runner, lowest priority);
    it is attached to the version's meta.json, where GET /models and the Slicer combo read it."""
    session = _session(store, params, device, progress)
    decision = session.verdict(params["version"], AdaptRequest.from_params(params))
    return {"version": params["version"], "gate": decision}


TASKS: Dict[str, Callable] = {"infer": run_infer, "rank": run_rank, "adapt": run_adapt, "verdict": run_verdict}
