"""The one Dice of the project: per foreground class, on label maps, as MONAI computes it.

`asfda evaluate`, the validation gate, the demo and every benchmark number call `class_dice`, so a
figure in docs/benchmarks.md means what a user's `asfda evaluate` prints.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

__all__ = ["class_dice", "mean_foreground_dice", "one_hot_dice", "one_hot_pair"]


def one_hot_pair(prediction, reference, n_classes: int):
    """Both label maps as (1, C, ...) one-hot tensors, after checking they share a shape: what Dice and HD95
    both take, built once per case."""
    pred = torch.as_tensor(np.asarray(prediction) if not torch.is_tensor(prediction) else prediction).long()
    ref = torch.as_tensor(np.asarray(reference) if not torch.is_tensor(reference) else reference).long()
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and reference {tuple(ref.shape)} differ in shape")
    return one_hot(pred[None, None], n_classes), one_hot(ref[None, None], n_classes)


def one_hot_dice(pred: torch.Tensor, ref: torch.Tensor) -> List[float]:
    """Dice of each foreground class of a `one_hot_pair`; 1.0 where both lack the class."""
    return [float(d) for d in compute_dice(pred, ref, include_background=False, ignore_empty=False)[0]]


def class_dice(prediction, reference, n_classes: int) -> List[float]:
    """Dice of each foreground class (1..n_classes-1) between two label maps of the same shape.

    Args:
        prediction, reference: integer class ids (numpy or torch), any spatial shape, the same for both.
        n_classes: the model's output channels (background included).
    Returns:
        one float per foreground class; 1.0 where both maps lack the class (MONAI's ignore_empty=False).
    """
    return one_hot_dice(*one_hot_pair(prediction, reference, n_classes))


def mean_foreground_dice(prediction, reference, n_classes: int) -> float:
    """The mean of `class_dice` over the foreground classes (the headline figure of one case)."""
    return float(np.mean(class_dice(prediction, reference, n_classes)))
