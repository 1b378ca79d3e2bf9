"""A class-stratified, noise-perturbed selection baseline in the manner of ClaSP PE (TMLR 2026).

Written from the method's description, not its code: a share of the budget (66 %) is split over the classes the
model predicts, each share going to the volumes that show that class (by predicted presence, weighted by its
predicted volume), so a rare class is queried every round; the rest goes by score. Scores are perturbed on a log
scale with Gumbel noise whose scale shrinks over rounds: taking the top of log(score) + scale * Gumbel is drawing
without replacement with probability proportional to score ** (1 / scale), so early rounds explore and later
rounds exploit. Seeded: the same pool, budget, round and seed give the same picks.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

__all__ = ["CLASS_SHARE", "class_quotas", "noise_scale", "perturbed_log_scores", "stratified_picks"]

CLASS_SHARE = 0.66  # of the budget, split over the predicted foreground classes
INITIAL_NOISE = 1.0  # the Gumbel scale of the first round
_FLOOR = 1e-12  # a score of zero still has a log


def noise_scale(round_index: int, initial: float = INITIAL_NOISE) -> float:
    """The perturbation's scale in round `round_index` (0 first): initial / (1 + round)."""
    if round_index < 0:
        raise ValueError(f"round must be 0 or more, not {round_index}")
    return float(initial) / (1.0 + round_index)


def perturbed_log_scores(scores: Sequence[float], round_index: int, seed: int) -> np.ndarray:
    """log(score) plus Gumbel noise of this round's scale (seeded)."""
    values = np.log(np.clip(np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0), _FLOOR, None))
    rng = np.random.default_rng([int(seed), int(round_index)])
    return values + noise_scale(round_index) * rng.gumbel(size=len(values))


def class_quotas(class_voxels: np.ndarray, stratified: int) -> dict:
    """Picks per foreground class: `stratified` split evenly over the classes predicted somewhere in the pool; a
    remainder goes to the classes of least predicted volume first (the rare ones)."""
    totals = np.asarray(class_voxels, dtype=float).sum(axis=0)[1:]  # background (class 0) is never stratified
    present = [int(c) + 1 for c in np.flatnonzero(totals > 0)]
    if not present or stratified <= 0:
        return {}
    base, extra = divmod(int(stratified), len(present))
    rarest_first = sorted(present, key=lambda c: (totals[c - 1], c))
    return {c: base + (1 if rank < extra else 0) for rank, c in enumerate(rarest_first)}


def stratified_picks(
    scores: Sequence[float], class_voxels: np.ndarray, k: int, round_index: int, seed: int, share: float = CLASS_SHARE
) -> List[int]:
    """k distinct pool indices: `share` of k split over the predicted classes, the rest by perturbed score.

    Args:
        scores: per-volume informativeness (positive; the volume's mean predictive entropy for the strategy).
        class_voxels: (volumes, classes) predicted voxels per class, background first.
        k: budget; round_index: the loop's round (the noise shrinks with it); seed: the noise's seed.
    """
    n = len(scores)
    k = min(int(k), n)
    if k <= 0:
        return []
    counts = np.asarray(class_voxels, dtype=float).reshape(n, -1)
    perturbed = perturbed_log_scores(scores, round_index, seed)
    fractions = counts / np.clip(counts.sum(axis=1, keepdims=True), 1.0, None)
    picks: List[int] = []
    for c, quota in class_quotas(counts, int(round(share * k))).items():
        # The class's score of a volume: its informativeness times how much of it the class is predicted to be.
        key = perturbed + np.log(np.clip(fractions[:, c], _FLOOR, None))
        key[counts[:, c] <= 0] = -np.inf  # only volumes predicted to show the class
        key[picks] = -np.inf
        for index in np.argsort(-key, kind="stable")[:quota]:
            if np.isfinite(key[index]) and len(picks) < k:
                picks.append(int(index))
    rest = np.array(perturbed)
    rest[picks] = -np.inf
    for index in np.argsort(-rest, kind="stable"):
        if len(picks) >= k:
            break
        if int(index) not in picks:
            picks.append(int(index))
    return picks
