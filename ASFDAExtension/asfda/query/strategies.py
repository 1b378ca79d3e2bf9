"""Query strategies behind one interface: ASFDA (DKD+ASD) and the baselines it must beat.

A strategy is one entry of REGISTRY; its name is in asfda.core.names.Strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from asfda.core.names import Strategy
from asfda.query.balanced import class_balanced_entropy, foreground_weighted_picks
from asfda.query.embedding import EmbeddingKind, embed
from asfda.query.selection import SelectionRule, fuse, k_center_greedy, rank_normalize, select
from asfda.query.signals import CaseSignals
from asfda.query.stratified import stratified_picks


@dataclass
class RankingOptions:
    strategy: Strategy = Strategy.ASFDA
    k: int = 4
    # Weight of DKD against ASD in the fused score. 0.25 (was 0.5): picked on the validation split of
    # `asfda bench labels` (docs/benchmarks.md); the gain was small, the ranking of volumes barely moves.
    alpha: float = 0.25
    rule: SelectionRule = SelectionRule.CLUSTER_COVERAGE
    embedding: EmbeddingKind = EmbeddingKind.MULTILAYER
    seed: int = 0
    cold_start_medoid: bool = False


Informativeness = Callable[[List[CaseSignals], "RankingOptions"], np.ndarray]
Picks = Callable[..., List[int]]


@dataclass
class RankedCase:
    case_id: str
    rank: int  # 1-based
    score: float
    dkd: Optional[float]
    asd: Optional[float]
    selected: bool


def _fused(signals: List[CaseSignals], options: RankingOptions) -> np.ndarray:
    return fuse(np.array([s.dkd for s in signals]), np.array([s.asd for s in signals]), options.alpha)


def _attribute(name: str, rank_normalised: bool = False) -> Informativeness:
    def read(signals: List[CaseSignals], _options: RankingOptions) -> np.ndarray:
        values = np.array([getattr(s, name) for s in signals])
        return rank_normalize(values) if rank_normalised else values

    return read


def _balanced_entropy(signals: List[CaseSignals], _options: RankingOptions) -> np.ndarray:
    return np.array([class_balanced_entropy(s.class_entropy) for s in signals])


def _epistemic(signals: List[CaseSignals], _options: RankingOptions) -> np.ndarray:
    if any(s.epistemic is None for s in signals):
        raise ValueError("mc_dropout ranking needs epistemic scores; compute them with the dropout passes")
    return np.array([s.epistemic for s in signals])


def _nothing(signals: List[CaseSignals], _options: RankingOptions) -> np.ndarray:
    return np.zeros(len(signals))


def _top_k(info, _pool, _labeled, k, _options, _reliability) -> List[int]:
    return [int(i) for i in np.argsort(-info, kind="stable")[:k]]


def _random_picks(info, pool, _labeled, k, options, _reliability) -> List[int]:
    return [int(i) for i in np.random.default_rng(options.seed).permutation(len(pool))[:k]]


def _foreground_random_picks(info, _pool, _labeled, k, options, _reliability) -> List[int]:
    return foreground_weighted_picks(info, k, options.seed)


def _class_voxels(signal: CaseSignals) -> List[int]:
    if signal.class_voxels:
        return list(signal.class_voxels)
    if len(signal.class_entropy) <= 2:  # a signal cached before per-class counts: background / foreground
        return [0, int(signal.foreground_voxels)]
    raise ValueError(f"{signal.case_id}: no per-class voxel counts in its signals; score the pool again")


def _stratified_picks(info, pool, labeled, k, options, _reliability) -> List[int]:
    # The loop's round, as far as the ranking can tell: each earlier round labelled about k volumes.
    round_index = len(labeled) // max(int(k), 1)
    counts = np.array([_class_voxels(s) for s in pool])
    return stratified_picks(info, counts, k, round_index, options.seed)


def _coreset_picks(_info, pool, labeled, k, options, _reliability) -> List[int]:
    space = embed(pool + labeled, EmbeddingKind.BOTTLENECK)
    return k_center_greedy(space[: len(pool)], space[len(pool) :], k, options.seed)


def _coverage_picks(info, pool, labeled, k, options, reliability) -> List[int]:
    space = embed(pool + labeled, options.embedding)
    return select(
        info, space[: len(pool)], space[len(pool) :], k, options.rule, reliability, options.seed,
        options.cold_start_medoid,
    )


@dataclass(frozen=True)
class StrategyEntry:
    """One query strategy: how informative each pool case is, how the k picks follow from that, and what
    the pool needs first (a model pass for the signals; dropout passes for the epistemic score)."""

    informativeness: Informativeness
    picks: Picks
    needs_model_pass: bool = True
    needs_epistemic: bool = False
    # Shown as the score: False for strategies whose order carries no information (random).
    scores_mean_something: bool = True


REGISTRY: Dict[Strategy, StrategyEntry] = {
    Strategy.ASFDA: StrategyEntry(_fused, _coverage_picks),
    Strategy.DKD: StrategyEntry(_attribute("dkd", rank_normalised=True), _coverage_picks),
    Strategy.ASD: StrategyEntry(_attribute("asd", rank_normalised=True), _coverage_picks),
    Strategy.RANDOM: StrategyEntry(_nothing, _random_picks, needs_model_pass=False, scores_mean_something=False),
    Strategy.ENTROPY: StrategyEntry(_attribute("entropy"), _top_k),
    Strategy.CORESET: StrategyEntry(_nothing, _coreset_picks),
    Strategy.MC_DROPOUT: StrategyEntry(_epistemic, _top_k, needs_epistemic=True),
    Strategy.FOREGROUND_RANDOM: StrategyEntry(_attribute("foreground_fraction"), _foreground_random_picks),
    Strategy.BALANCED_ENTROPY: StrategyEntry(_balanced_entropy, _top_k),
    # ClaSP PE-style: class-stratified, log-scale Gumbel-perturbed predictive entropy (asfda.query.stratified)
    Strategy.CLASS_STRATIFIED: StrategyEntry(_attribute("entropy"), _stratified_picks),
}


def strategy_entry(strategy) -> StrategyEntry:
    """The registry entry of a strategy name or enum member (ValueError for an unknown name)."""
    return REGISTRY[Strategy(strategy)]


def informativeness(signals: List[CaseSignals], options: RankingOptions) -> np.ndarray:
    """Per-case informativeness of `signals` under `options.strategy` (higher: more worth a label)."""
    return strategy_entry(options.strategy).informativeness(signals, options)


def rank(
    pool: List[CaseSignals],
    labeled: List[CaseSignals],
    options: RankingOptions,
    reliability: Optional[np.ndarray] = None,
) -> List[RankedCase]:
    """Order the whole pool: the k picks first (in pick order), then the rest by informativeness.

    Args:
        pool: signals of the unlabelled cases; labeled: signals of the cases with a clinician label.
        options: strategy, budget k, seed and the selection rule's settings.
        reliability: optional per-pool-case weights for the coverage rule.
    Returns:
        one RankedCase per pool case, rank 1 first; the first k are `selected`.
    """
    if not pool:
        return []
    entry = strategy_entry(options.strategy)
    info = entry.informativeness(pool, options)
    k = min(options.k, len(pool))
    picks = list(entry.picks(info, pool, labeled, k, options, reliability))
    if not entry.scores_mean_something:
        info = np.zeros(len(pool))
    rest = [int(i) for i in np.argsort(-info, kind="stable") if int(i) not in picks]
    ranked = []
    for position, index in enumerate(picks + rest):
        signal = pool[index]
        ranked.append(
            RankedCase(signal.case_id, position + 1, float(info[index]), signal.dkd, signal.asd, position < k)
        )
    return ranked
