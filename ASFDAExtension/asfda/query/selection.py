"""Selection rules that turn per-volume informativeness into k picks that cover the target pool.

First measurements showed why plain top-k is not enough: the most informative volumes crowd into
one sub-population, and fine-tuning on them makes the model forget the others. Each rule here is a
named option so benchmarks can compare them under the same interface.
"""

from __future__ import annotations

import enum
from typing import List, Optional

import numpy as np
from scipy.stats import rankdata
from sklearn.cluster import KMeans


class SelectionRule(str, enum.Enum):
    TOP_K = "top_k"  # plain top-k informativeness
    GREEDY_DISTANCE = "greedy_distance"  # informativeness x distance to the nearest labelled/picked volume
    CLUSTER_COVERAGE = "cluster_coverage"  # most informative volume of each cluster no label covers yet
    DENSITY = "density"  # informativeness x local density (representative volumes first)
    COMPLEMENTARY = "complementary"  # informative, representative and NOT reliably pseudo-labelled


def rank_normalize(values: np.ndarray) -> np.ndarray:
    """Map values to (0, 1] by rank, so differently scaled metrics can be fused."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    return rankdata(np.nan_to_num(values, nan=-np.inf)) / len(values)


def fuse(dkd: np.ndarray, asd: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return alpha * rank_normalize(dkd) + (1.0 - alpha) * rank_normalize(asd)


def _nearest_distance(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    if len(centers) == 0:
        return np.full(len(points), np.inf)
    return np.sqrt(((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1)).min(axis=1)


def density(points: np.ndarray) -> np.ndarray:
    """Mean Gaussian-kernel similarity to the pool, bandwidth the median pairwise distance."""
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    scale = np.median(d2[np.triu_indices(len(points), 1)]) if len(points) > 1 else 1.0
    return np.exp(-d2 / max(scale, 1e-12)).mean(axis=1)


def _greedy_distance(
    info: np.ndarray, pool: np.ndarray, labeled: np.ndarray, k: int, weight: np.ndarray, exclude: List[int] = ()
) -> List[int]:
    picks: List[int] = []
    taken = set(exclude)
    centers = labeled.copy()
    for _ in range(min(k, len(info) - len(taken))):
        dist = _nearest_distance(pool, centers)
        if np.isinf(dist).all():
            dist = np.ones(len(pool))  # nothing chosen yet: distance does not discriminate
        scaled = dist / max(float(dist.max()), 1e-12)
        value = info * weight * scaled
        value[list(taken)] = -np.inf
        pick = int(np.argmax(value))
        picks.append(pick)
        taken.add(pick)
        centers = np.vstack([centers, pool[pick : pick + 1]])
    return picks


def _cluster_coverage(
    info: np.ndarray, pool: np.ndarray, labeled: np.ndarray, k: int, seed: int, cold_start_medoid: bool
) -> List[int]:
    everything = np.vstack([pool, labeled]) if len(labeled) else pool
    n_clusters = min(len(everything), k + len(labeled))
    model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(everything)
    pool_clusters = model.labels_[: len(pool)]
    covered = set(model.labels_[len(pool) :].tolist())
    sizes = np.bincount(model.labels_, minlength=n_clusters)
    picks: List[int] = []
    # Largest uncovered clusters first: they hold the most volumes that no label speaks for.
    for cluster in sorted(range(n_clusters), key=lambda c: -sizes[c]):
        if cluster in covered or len(picks) >= k:
            continue
        members = np.flatnonzero(pool_clusters == cluster)
        if len(members) == 0:
            continue
        if cold_start_medoid and len(labeled) == 0:
            spread = np.linalg.norm(pool[members] - model.cluster_centers_[cluster], axis=1)
            picks.append(int(members[np.argmin(spread)]))
        else:
            picks.append(int(members[np.argmax(info[members])]))
    if len(picks) < k:  # every cluster covered: distance-aware greedy for the rest
        chosen = np.vstack([labeled, pool[picks]])
        picks += _greedy_distance(info, pool, chosen, k - len(picks), np.ones(len(info)), exclude=picks)
    return picks[:k]


def select(
    informativeness: np.ndarray,
    pool_embedding: np.ndarray,
    labeled_embedding: Optional[np.ndarray],
    k: int,
    rule: SelectionRule = SelectionRule.CLUSTER_COVERAGE,
    reliability: Optional[np.ndarray] = None,
    seed: int = 0,
    cold_start_medoid: bool = False,
) -> List[int]:
    """Indices into the pool, in pick order."""
    info = np.asarray(informativeness, dtype=np.float64)
    k = min(int(k), len(info))
    if k <= 0:
        return []
    labeled = (
        np.asarray(labeled_embedding, dtype=np.float64)
        if labeled_embedding is not None and len(labeled_embedding)
        else np.zeros((0, pool_embedding.shape[1]))
    )
    rule = SelectionRule(rule)
    if rule == SelectionRule.TOP_K:
        return [int(i) for i in np.argsort(-info, kind="stable")[:k]]
    if rule == SelectionRule.GREEDY_DISTANCE:
        return _greedy_distance(info, pool_embedding, labeled, k, np.ones(len(info)))
    if rule == SelectionRule.DENSITY:
        return _greedy_distance(info, pool_embedding, labeled, k, rank_normalize(density(pool_embedding)))
    if rule == SelectionRule.COMPLEMENTARY:
        unreliable = 1.0 - (rank_normalize(reliability) if reliability is not None else np.zeros(len(info)))
        weight = rank_normalize(density(pool_embedding)) * (0.5 + unreliable)
        return _greedy_distance(info, pool_embedding, labeled, k, weight)
    return _cluster_coverage(info, pool_embedding, labeled, k, seed, cold_start_medoid)


def k_center_greedy(pool: np.ndarray, labeled: np.ndarray, k: int, seed: int = 0) -> List[int]:
    """Core-set baseline (Sener & Savarese): repeatedly take the volume farthest from all centres."""
    picks: List[int] = []
    centers = labeled if len(labeled) else np.zeros((0, pool.shape[1]))
    if len(centers) == 0 and len(pool):
        first = int(np.random.default_rng(seed).integers(len(pool)))
        picks.append(first)
        centers = pool[first : first + 1]
    while len(picks) < min(k, len(pool)):
        dist = _nearest_distance(pool, centers)
        dist[picks] = -np.inf
        pick = int(np.argmax(dist))
        picks.append(pick)
        centers = np.vstack([centers, pool[pick : pick + 1]])
    return picks
