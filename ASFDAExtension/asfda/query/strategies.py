"""Query strategies behind one interface: ASFDA (DKD+ASD) and the baselines it must beat."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from asfda.query.balanced import class_balanced_entropy, foreground_weighted_picks
from asfda.query.embedding import EmbeddingKind, embed
from asfda.query.selection import SelectionRule, fuse, k_center_greedy, rank_normalize, select
from asfda.query.signals import CaseSignals


class Strategy(str, enum.Enum):
    ASFDA = "asfda"  # fused DKD + ASD with a coverage-aware selection rule
    DKD = "dkd"
    ASD = "asd"
    RANDOM = "random"
    ENTROPY = "entropy"  # whole-volume mean entropy, top-k
    CORESET = "coreset"  # k-center greedy on the bottleneck feature
    MC_DROPOUT = "mc_dropout"  # epistemic uncertainty from dropout passes, top-k
    # Random, weighted by the model's predicted foreground fraction (never the truth)
    FOREGROUND_RANDOM = "foreground_random"
    BALANCED_ENTROPY = "balanced_entropy"  # mean over classes of the entropy inside each predicted class, top-k


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


@dataclass
class RankedCase:
    case_id: str
    rank: int  # 1-based
    score: float
    dkd: Optional[float]
    asd: Optional[float]
    selected: bool


def informativeness(signals: List[CaseSignals], options: RankingOptions) -> np.ndarray:
    strategy = Strategy(options.strategy)
    dkd = np.array([s.dkd for s in signals])
    asd = np.array([s.asd for s in signals])
    if strategy == Strategy.ASFDA:
        return fuse(dkd, asd, options.alpha)
    if strategy == Strategy.DKD:
        return rank_normalize(dkd)
    if strategy == Strategy.ASD:
        return rank_normalize(asd)
    if strategy == Strategy.ENTROPY:
        return np.array([s.entropy for s in signals])
    if strategy == Strategy.BALANCED_ENTROPY:
        return np.array([class_balanced_entropy(s.class_entropy) for s in signals])
    if strategy == Strategy.FOREGROUND_RANDOM:
        return np.array([s.foreground_fraction for s in signals])
    if strategy == Strategy.MC_DROPOUT:
        if any(s.epistemic is None for s in signals):
            raise ValueError("mc_dropout ranking needs epistemic scores; compute them with the dropout passes")
        return np.array([s.epistemic for s in signals])
    return np.zeros(len(signals))


def rank(
    pool: List[CaseSignals],
    labeled: List[CaseSignals],
    options: RankingOptions,
    reliability: Optional[np.ndarray] = None,
) -> List[RankedCase]:
    """Order the whole pool: the k picks first (in pick order), then the rest by informativeness."""
    if not pool:
        return []
    strategy = Strategy(options.strategy)
    info = informativeness(pool, options)
    k = min(options.k, len(pool))
    if strategy == Strategy.RANDOM:
        order = list(np.random.default_rng(options.seed).permutation(len(pool)))
        picks, info = order[:k], np.zeros(len(pool))
    elif strategy == Strategy.FOREGROUND_RANDOM:
        picks = foreground_weighted_picks(info, k, options.seed)
    elif strategy == Strategy.CORESET:
        space = embed(pool + labeled, EmbeddingKind.BOTTLENECK)
        picks = k_center_greedy(space[: len(pool)], space[len(pool) :], k, options.seed)
    elif strategy in (Strategy.ENTROPY, Strategy.MC_DROPOUT, Strategy.BALANCED_ENTROPY):
        picks = [int(i) for i in np.argsort(-info, kind="stable")[:k]]
    else:
        space = embed(pool + labeled, options.embedding)
        picks = select(
            info,
            space[: len(pool)],
            space[len(pool) :],
            k,
            options.rule,
            reliability,
            options.seed,
            options.cold_start_medoid,
        )
    rest = [int(i) for i in np.argsort(-info, kind="stable") if int(i) not in picks]
    ranked = []
    for position, index in enumerate(list(picks) + rest):
        signal = pool[index]
        ranked.append(
            RankedCase(signal.case_id, position + 1, float(info[index]), signal.dkd, signal.asd, position < k)
        )
    return ranked
