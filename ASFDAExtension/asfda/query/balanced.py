"""Baseline signals from recent 3D active-learning studies: class-balanced entropy, foreground-aware random."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from asfda.models.voxel_maps import predicted_class


def class_entropies(
    probs: torch.Tensor, entropy: torch.Tensor, predicted: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean normalised entropy over the voxels predicted as each class (argmax), one value per class, as a
    tensor on the probabilities' device (one pass for all classes, however many). A class the model predicts
    nowhere gets 1.0: its absence is the most uncertain outcome, not a certain one. `predicted`: the argmax,
    if computed."""
    classes = probs.shape[0]
    predicted = (predicted_class(probs) if predicted is None else predicted).flatten()
    sums = torch.bincount(predicted, weights=entropy.flatten(), minlength=classes)
    counts = torch.bincount(predicted, minlength=classes)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.ones_like(sums)).float()


def class_balanced_entropy(per_class: Sequence[float]) -> float:
    """Every class weighs the same, so the background's many confident voxels cannot drown a small organ."""
    values = [float(v) for v in per_class]
    return float(np.mean(values)) if values else 0.0


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
