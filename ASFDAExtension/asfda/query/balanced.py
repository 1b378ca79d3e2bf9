"""Baseline signals from recent 3D active-learning studies: class-balanced entropy, foreground-aware random."""

from __future__ import annotations

from typing import List

import numpy as np
import torch


def class_entropies(probs: torch.Tensor, entropy: torch.Tensor) -> List[float]:
    """Mean normalised entropy over the voxels predicted as each class (argmax), one value per class. A class
    the model predicts nowhere gets 1.0: its absence is the most uncertain outcome, not a certain one."""
    predicted = probs.argmax(dim=0)
    found = []
    for c in range(probs.shape[0]):
        inside = predicted == c
        found.append(float(entropy[inside].mean()) if bool(inside.any()) else 1.0)
    return found


def class_balanced_entropy(per_class: List[float]) -> float:
    """Every class weighs the same, so the background's many confident voxels cannot drown a small organ."""
    return float(np.mean(per_class)) if per_class else 0.0


def foreground_weighted_picks(foreground: np.ndarray, k: int, seed: int) -> List[int]:
    """k distinct indices drawn at random with probability proportional to the model's predicted foreground
    fraction (never the truth): volumes that show more anatomy are likelier picks; all-zero falls back to
    uniform."""
    weights = np.clip(np.asarray(foreground, dtype=float), 0.0, None)
    n = len(weights)
    positive = int((weights > 0).sum())
    if positive < min(k, n):  # too few volumes with any foreground: the rest share a tiny weight
        weights = weights + (weights.sum() or 1.0) * 1e-6
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(n, size=min(k, n), replace=False, p=weights / weights.sum())]
