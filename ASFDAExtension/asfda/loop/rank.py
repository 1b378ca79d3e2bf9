"""Rank a datastore's unlabelled cases with the active model and store the worklist."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from asfda.data.datastore import Datastore
from asfda.data.state import ScoreRecord, utc_now
from asfda.loop.slices import requested_slices
from asfda.models.inference import Predictor
from asfda.query.slices import RequestedSlices, SliceOptions
from asfda.query.strategies import RankedCase, RankingOptions, Strategy, rank, strategy_entry
from asfda.scoring.cache import prune_signal_cache
from asfda.scoring.options import ScoringOptions
from asfda.scoring.pool import CaseScorer, PoolSignals, add_epistemic, score_pool

# MONAI Label's epistemic scoring default number of dropout samples.
MC_DROPOUT_SAMPLES = 5

ProgressFn = Callable[[str, int, int], None]


@dataclass
class RankOutcome:
    ranked: List[RankedCase]
    model_version: str
    errors: Dict[str, str] = field(default_factory=dict)  # cases left out of the ranking, with the reason
    scored: int = 0  # cases whose signals were computed by this rank
    cached: int = 0  # cases whose signals came from the cache
    precision: Optional[str] = None  # the numeric precision the signals were computed in (set by the session)
    warnings: List[str] = field(default_factory=list)  # e.g. DKD statistics that did not match the network
    requested_slices: Dict[str, RequestedSlices] = field(default_factory=dict)  # a sparse rank's picks


def _random_order(pool_ids: List[str], options: RankingOptions) -> List[RankedCase]:
    """Random selection needs no signal at all: no pass over the pool."""
    order = np.random.default_rng(options.seed).permutation(len(pool_ids))
    k = min(options.k, len(pool_ids))
    return [RankedCase(pool_ids[i], n + 1, 0.0, None, None, n < k) for n, i in enumerate(order)]


def rank_pool(
    store: Datastore,
    options: RankingOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    scoring: Optional[ScoringOptions] = None,
    should_yield: Optional[Callable[[], bool]] = None,
    pool_scorer: Optional[Callable[..., PoolSignals]] = None,  # score_pool's shape, e.g. scoring.ray_pool's
    slices: Optional[SliceOptions] = None,
) -> RankOutcome:
    """Rank the unlabelled cases with the active model and store the ranking (faces call LoopSession.rank).

    Args:
        options: strategy, budget k, seed, selection rule; device: torch device; scoring: precision, chunking.
        should_yield: asked between chunks; pool_scorer: replaces score_pool (the Ray scorer).
        slices: a sparse rank: how many slices of each pick to ask for, on which axis, by which rule.
    Returns:
        a RankOutcome: ranked cases (the picks first), the model version, errors, scored and cached counts.
    """
    model = store.models.load(device=device)
    prune_signal_cache(store)  # before this rank adds a model's worth of entries
    strategy = Strategy(options.strategy)
    entry = strategy_entry(strategy)
    case_ids = store.case_ids()
    labeled_ids = store.labeled_ids()
    pool_ids = [c for c in case_ids if c not in set(labeled_ids)]
    knowledge_source = None  # what DKD measured against; random scores nothing
    scorer = None
    if not entry.needs_model_pass:
        outcome = RankOutcome(_random_order(pool_ids, options), model.version)
    else:
        scorer = CaseScorer(model, device, scoring or ScoringOptions())
        signals = (pool_scorer or score_pool)(store, scorer, pool_ids + labeled_ids, progress, should_yield)
        if entry.needs_epistemic:
            add_epistemic(store, scorer, signals, MC_DROPOUT_SAMPLES, progress)
        pool = [signals.signals[c] for c in pool_ids if c in signals.signals]
        labeled = [signals.signals[c] for c in labeled_ids if c in signals.signals]
        outcome = RankOutcome(
            rank(pool, labeled, options), model.version, signals.errors, signals.scored, signals.cached
        )
        knowledge_source = next((s.knowledge_source for s in signals.signals.values()), None)
        if scorer.reference.warning:
            outcome.warnings.append(f"DKD: {scorer.reference.warning}")
    outcome.errors.update(store.duplicate_cases())  # reported, never ranked (which file is meant is unknown)
    if slices is not None and slices.per_volume > 0:
        predictor = (
            scorer.predictor
            if scorer is not None
            else Predictor(model.network, model.config, device, (scoring or ScoringOptions()).precision)
        )
        picks = [r.case_id for r in outcome.ranked if r.selected]
        outcome.requested_slices = requested_slices(store, predictor, picks, slices)
    run_id, now = uuid.uuid4().hex[:12], utc_now()
    store.state.replace_scores(
        strategy.value,
        [
            ScoreRecord(
                r.case_id,
                strategy.value,
                model.version,
                r.dkd,
                r.asd,
                r.score,
                r.rank,
                r.selected,
                now,
                run_id,
                knowledge_source,
                outcome.requested_slices[r.case_id].to_dict() if r.case_id in outcome.requested_slices else None,
            )
            for r in outcome.ranked
        ],
    )
    return outcome
