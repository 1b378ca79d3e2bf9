"""Anatomical Segmentation Difficulty: how unsure the model is about the anatomy it segments.

Our reconstruction: the mean normalised voxel entropy H(p_v) / log C over an adaptive foreground
region, so a volume with large, confidently empty background does not look easy or hard because of
it. An empty region (the model sees no anatomy at all) is maximal difficulty.
"""

from __future__ import annotations

import enum
import math
from typing import Optional

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu


class ForegroundRule(str, enum.Enum):
    OTSU = "otsu"  # foreground probability above a per-volume Otsu threshold, near the predicted anatomy
    DILATED_ARGMAX = "dilated_argmax"  # predicted foreground, dilated by 2 voxels
    WHOLE_VOLUME = "whole_volume"  # ablation: no region at all


def voxel_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(C, ...) probabilities -> (...) entropy normalised to [0, 1]."""
    c = probs.shape[0]
    p = probs.clamp_min(1e-8)
    return -(p * p.log()).sum(dim=0) / math.log(c)


def predicted_foreground(probs: torch.Tensor) -> torch.Tensor:
    """argmax(probs) > 0 without torch's argmax over the leading channel axis, which is slow on CPU."""
    strongest_other = probs[1]
    for channel in probs[2:]:
        strongest_other = torch.maximum(strongest_other, channel)
    return probs[0] < strongest_other  # a tie goes to background, as argmax does


def foreground_region(probs: torch.Tensor, rule: ForegroundRule = ForegroundRule.OTSU) -> np.ndarray:
    fg = (1.0 - probs[0]).numpy()  # channel 0 is background by the model config's contract
    if rule == ForegroundRule.WHOLE_VOLUME:
        return np.ones(fg.shape, dtype=bool)
    if rule == ForegroundRule.DILATED_ARGMAX:
        return ndimage.binary_dilation(predicted_foreground(probs).numpy(), iterations=2)
    near_anatomy = ndimage.binary_dilation(predicted_foreground(probs).numpy(), iterations=2)
    if float(fg.max() - fg.min()) < 1e-6:
        return (fg > 0.5) & near_anatomy
    # Otsu on the foreground probability separates "probably anatomy" from confident background and
    # keeps the uncertain rim where errors happen; staying near the predicted anatomy stops uncertain
    # background far from any organ (noise, artefacts) from counting as anatomical difficulty.
    return (fg > threshold_otsu(fg)) & near_anatomy


def anatomical_segmentation_difficulty(
    probs: torch.Tensor, rule: ForegroundRule = ForegroundRule.OTSU, entropy: Optional[torch.Tensor] = None
) -> float:
    """`entropy` may be passed in when the caller already computed voxel_entropy(probs)."""
    region = foreground_region(probs, rule)
    if not region.any():
        return 1.0
    entropy = voxel_entropy(probs) if entropy is None else entropy
    return float(entropy.numpy()[region].mean())


def mc_dropout_epistemic(samples: torch.Tensor) -> float:
    """Mutual information between prediction and weights (BALD), averaged over voxels.

    samples: (S, C, ...) probabilities from S dropout passes.
    """
    mean = samples.mean(dim=0)
    predictive = voxel_entropy(mean)
    expected = torch.stack([voxel_entropy(s) for s in samples]).mean(dim=0)
    return float((predictive - expected).clamp_min(0).mean())
