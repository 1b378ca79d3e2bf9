"""Per-voxel maps of one model's output: the predicted class, normalised entropy, confident labels.

They live beside the Predictor because "the model's prediction" must be one definition for inference,
scoring, pseudo-labels and evaluation. Every function works on whatever device the probabilities live on.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

__all__ = ["CHANNEL_LOOP_MAX_CLASSES", "predicted_class", "pseudo_label", "voxel_entropy"]


def voxel_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(C, ...) probabilities -> (...) entropy normalised to [0, 1]."""
    return torch.special.entr(probs).sum(dim=0) / math.log(probs.shape[0])  # entr: -p log p, 0 at p = 0


# Above this many classes a channel loop costs more than torch's argmax, even on the CPU.
CHANNEL_LOOP_MAX_CLASSES = 16


def predicted_class(probs: torch.Tensor) -> torch.Tensor:
    """argmax over the channel axis (first class wins ties); on the CPU a channel loop for few classes."""
    if probs.device.type != "cpu" or probs.shape[0] > CHANNEL_LOOP_MAX_CLASSES:
        return torch.argmax(probs, dim=0)
    best, index = probs[0], torch.zeros(probs.shape[1:], dtype=torch.int64)
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        best = torch.where(better, probs[c], best)
        index.masked_fill_(better, c)
    return index


def pseudo_label(probs: torch.Tensor, voxel_confidence: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(C, ...) probabilities -> (argmax label, boolean mask of voxels confident enough to train on)."""
    top, label = probs.max(dim=0)
    return label.to(torch.uint8), top >= voxel_confidence
