"""What each job kind does, run inside the job child process (never in the API process)."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

from asfda.data.datastore import Datastore
from asfda.worker.jobstore import JobStore

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


def run_infer(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    from asfda.loop.infer import predict_case
    from asfda.models.inference import Predictor

    progress("infer", 0, 1)
    model = store.models.load(device=device)
    predict_case(store, params["case_id"], model, Predictor(model.network, model.config, device))
    progress("infer", 1, 1)
    return {"case_id": params["case_id"], "model_version": model.version}


def scoring_options(params: Dict[str, Any]):
    from asfda.scoring.options import ScoringOptions

    options = ScoringOptions()
    if params.get("precision"):
        options.precision = params["precision"]
    if params.get("chunk_size"):
        options.chunk_size = int(params["chunk_size"])
    return options


def run_rank(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    from asfda.loop.rank import rank_pool
    from asfda.query.strategies import RankingOptions, Strategy
    from asfda.worker.jobstore import PRIORITY

    strategy = Strategy(params["strategy"])
    options = RankingOptions(strategy=strategy, k=int(params["budget_k"]), seed=int(params.get("seed", 0)))
    pool_scorer = ray_pool_scorer()
    outcome = rank_pool(
        store,
        options,
        device,
        progress=progress,
        scoring=scoring_options(params),
        # Between chunks an Infer request (a clinician waiting on a case) goes first; the rank resumes after it.
        should_yield=lambda: progress.jobs.interactive_waiting(PRIORITY["rank"]),
        pool_scorer=pool_scorer,
    )
    result = {
        "strategy": strategy.value,
        "budget_k": options.k,
        "model_version": outcome.model_version,
        "ranked": len(outcome.ranked),
        "selected": [r.case_id for r in outcome.ranked if r.selected],
        "scored": outcome.scored,
        "cached": outcome.cached,
        "skipped": outcome.errors,
    }
    if pool_scorer is not None:
        result["ray"] = pool_scorer.report.as_dict()  # actors, retries, actor deaths
    return result


def ray_pool_scorer():
    """`asfda serve --ray ADDRESS` puts the address in the environment of every job process."""
    import os

    from asfda.scoring.ray_options import ADDRESS_ENV

    if not os.environ.get(ADDRESS_ENV):
        return None
    from asfda.scoring.ray_options import RayOptions
    from asfda.scoring.ray_pool import RayPoolScorer

    return RayPoolScorer(RayOptions.from_env(os.environ[ADDRESS_ENV]))


def run_adapt(store: Datastore, params: Dict[str, Any], device: str, progress: ProgressReporter) -> Dict[str, Any]:
    from asfda.adapt.finetune import FinetuneOptions
    from asfda.adapt.validation_gate import GateOptions
    from asfda.loop.adapt import AdaptOptions, adapt_datastore

    finetune = FinetuneOptions(seed=int(params.get("seed", 0)))
    gate = GateOptions()
    if params.get("gate_decide_from_labels") is not None:
        gate.decide_from_labels = int(params["gate_decide_from_labels"])
    if params.get("steps"):
        finetune.steps = int(params["steps"])
    options = AdaptOptions(
        finetune=finetune,
        use_pseudo_labels=bool(params.get("use_pseudo_labels", True)),
        scoring=scoring_options(params),
        gate=gate,
    )
    # activate=False: only the supervising worker flips ACTIVE, after it saw this process succeed, so a
    # cancelled or killed run can never change the active model.
    result = adapt_datastore(store, options, device, progress=progress, activate=False)
    return {
        "version": result.version,
        "parent": result.parent,
        "metrics": result.metrics,
        "pseudo_cases": result.pseudo_cases,
        "gate": result.gate,  # the supervising worker activates the version only if the gate passed
    }


TASKS: Dict[str, Callable] = {"infer": run_infer, "rank": run_rank, "adapt": run_adapt}
