"""Anatomical Segmentation Difficulty: how unsure the model is about the anatomy it segments.

Our reconstruction: the mean normalised voxel entropy H(p_v) / log C over an adaptive foreground
region, so a volume with large, confidently empty background does not look easy or hard because of
it. An empty region (the model sees no anatomy at all) is maximal difficulty.

Every function here works on whatever device the probabilities live on, so scoring after a GPU pass
never copies a probability map to the host.
"""

from __future__ import annotations

import enum
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.filters import threshold_otsu

from asfda.models.voxel_maps import predicted_class, voxel_entropy

OTSU_BINS = 256  # skimage's default, so the threshold matches threshold_otsu on the whole map


class ForegroundRule(str, enum.Enum):
    OTSU = "otsu"  # foreground probability above a per-volume Otsu threshold, near the predicted anatomy
    DILATED_ARGMAX = "dilated_argmax"  # predicted foreground, dilated by 2 voxels
    WHOLE_VOLUME = "whole_volume"  # ablation: no region at all


def dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary dilation with the 6-connected cross, `iterations` times (scipy's binary_dilation default): scipy on
    the CPU (4x faster there than pooling), max-pooling along each axis on an accelerator."""
    if mask.device.type == "cpu":
        return torch.from_numpy(ndimage.binary_dilation(mask.numpy(), iterations=iterations))
    return dilate_by_pooling(mask, iterations)


def dilate_by_pooling(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """The cross dilation as max-pooling along each axis: runs on any device."""
    grid = mask[None, None].float()
    for _ in range(iterations):
        grid = torch.maximum(
            torch.maximum(
                F.max_pool3d(grid, (3, 1, 1), stride=1, padding=(1, 0, 0)),
                F.max_pool3d(grid, (1, 3, 1), stride=1, padding=(0, 1, 0)),
            ),
            F.max_pool3d(grid, (1, 1, 3), stride=1, padding=(0, 0, 1)),
        )
    return grid[0, 0] > 0.5


def otsu_threshold(values: torch.Tensor, low: Optional[float] = None, high: Optional[float] = None) -> float:
    """skimage's Otsu threshold of `values`, from a histogram taken on their device (256 counts come back);
    `low`/`high`: the values' range when the caller has it already."""
    if low is None or high is None:
        low, high = (float(v) for v in torch.aminmax(values.float()))
    counts = torch.histc(values.float(), bins=OTSU_BINS, min=low, max=high).cpu().numpy()
    edges = np.linspace(low, high, OTSU_BINS + 1)
    return float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2)))


def foreground_region(
    probs: torch.Tensor, rule: ForegroundRule = ForegroundRule.OTSU, foreground: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Boolean region on the probabilities' device; `foreground`: the predicted foreground, if computed."""
    if rule == ForegroundRule.WHOLE_VOLUME:
        return torch.ones(probs.shape[1:], dtype=torch.bool, device=probs.device)
    near_anatomy = dilate(predicted_class(probs) > 0 if foreground is None else foreground, iterations=2)
    if rule == ForegroundRule.DILATED_ARGMAX:
        return near_anatomy
    fg = 1.0 - probs[0]  # channel 0 is background by the model config's contract
    low, high = (float(v) for v in torch.aminmax(fg))
    if high - low < 1e-6:
        return (fg > 0.5) & near_anatomy
    # Otsu on the foreground probability separates "probably anatomy" from confident background and
    # keeps the uncertain rim where errors happen; staying near the predicted anatomy stops uncertain
    # background far from any organ (noise, artefacts) from counting as anatomical difficulty.
    return (fg > otsu_threshold(fg, low, high)) & near_anatomy


def region_mean(values: torch.Tensor, region: torch.Tensor, empty: float) -> torch.Tensor:
    """Mean of `values` over `region` as a 0-d tensor on their device; `empty` where the region is empty."""
    count = region.sum()
    total = torch.where(region, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, empty))


def anatomical_segmentation_difficulty(
    probs: torch.Tensor, rule: ForegroundRule = ForegroundRule.OTSU, entropy: Optional[torch.Tensor] = None
) -> float:
    """`entropy` may be passed in when the caller already computed voxel_entropy(probs)."""
    entropy = voxel_entropy(probs) if entropy is None else entropy
    return float(region_mean(entropy, foreground_region(probs, rule), empty=1.0))
