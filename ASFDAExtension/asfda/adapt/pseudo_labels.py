"""Teacher pseudo-labels with low-confidence voxels masked out of the loss."""

from __future__ import annotations

from typing import Tuple

import torch


def pseudo_label(probs: torch.Tensor, voxel_confidence: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(C, ...) probabilities -> (argmax label, boolean mask of voxels confident enough to train on)."""
    top, label = probs.max(dim=0)
    return label.to(torch.uint8), top >= voxel_confidence
