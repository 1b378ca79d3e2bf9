"""The fine-tuning loop: MONAI DiceCE on clinician labels + a ramped, masked loss on pseudo-labels."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.transforms import Compose, RandFlipd, RandSpatialCropd, SpatialPadd
from torch import nn


class Cancelled(Exception):
    """Raised inside a job when the user asked it to stop."""


@dataclass
class TrainingItem:
    case_id: str
    image: torch.Tensor  # (1, X, Y, Z) prepared image
    label: torch.Tensor  # (1, X, Y, Z) integer labels
    mask: Optional[torch.Tensor] = None  # (1, X, Y, Z) bool; None for clinician labels (all voxels count)


@dataclass
class FinetuneOptions:
    steps: int = 80
    learning_rate: float = 1e-3
    batch_size: int = 2
    pseudo_weight: float = 0.5
    pseudo_ramp_steps: int = 20  # pseudo-labels join gradually: early steps follow the clinician labels
    pull_to_pretrained: float = 0.0  # L2-SP weight: guards against drifting far from source knowledge
    # > 0: the published model is an EMA (mean teacher) of the student weights. 0.95 (was 0): picked on the
    # validation split of `asfda bench labels` (docs/benchmarks.md) over no guard and an L2-SP pull.
    ema_decay: float = 0.95
    flip_augment: bool = True
    seed: int = 0


ProgressFn = Callable[[str, int, int, Optional[float]], None]


def _batch_transform(roi_size: List[int], flip: bool) -> Compose:
    keys = ["image", "label", "mask"]
    steps = [
        SpatialPadd(keys=keys, spatial_size=roi_size),
        RandSpatialCropd(keys=keys, roi_size=roi_size, random_size=False),
    ]
    if flip:
        steps.append(RandFlipd(keys=keys, prob=0.5, spatial_axis=0))
    return Compose(steps)


def _stack(items: List[TrainingItem], transform: Compose) -> Dict[str, torch.Tensor]:
    samples = [
        transform(
            {
                "image": item.image,
                "label": item.label.float(),
                "mask": (item.mask if item.mask is not None else torch.ones_like(item.label, dtype=torch.bool)).float(),
            }
        )
        for item in items
    ]
    return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("image", "label", "mask")}


def masked_cross_entropy(logits: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    voxel = F.cross_entropy(logits, label[:, 0].long(), reduction="none")
    weight = mask[:, 0]
    return (voxel * weight).sum() / weight.sum().clamp_min(1.0)


def finetune(
    network: nn.Module,
    roi_size: List[int],
    labeled: List[TrainingItem],
    pseudo: List[TrainingItem],
    options: FinetuneOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Dict[str, float]:
    """Train `network` in place; returns the final loss figures."""
    if not labeled:
        raise ValueError("adaptation needs at least one clinician label")
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    network.to(device).train()
    anchor = [p.detach().clone() for p in network.parameters()] if options.pull_to_pretrained > 0 else None
    ema = copy.deepcopy(network).eval() if options.ema_decay > 0 else None
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    transform = _batch_transform(roi_size, options.flip_augment)
    started = time.monotonic()
    last: Dict[str, float] = {}
    for step in range(1, options.steps + 1):
        if should_stop and should_stop():
            raise Cancelled("adaptation cancelled")
        batch = _stack([labeled[i] for i in rng.integers(len(labeled), size=options.batch_size)], transform)
        logits = network(batch["image"].to(device))
        loss_labels = dice_ce(logits, batch["label"].to(device))
        loss = loss_labels
        loss_pseudo = torch.zeros((), device=device)
        if pseudo:
            pb = _stack([pseudo[i] for i in rng.integers(len(pseudo), size=options.batch_size)], transform)
            loss_pseudo = masked_cross_entropy(
                network(pb["image"].to(device)), pb["label"].to(device), pb["mask"].to(device)
            )
            ramp = min(1.0, step / max(options.pseudo_ramp_steps, 1))
            loss = loss + options.pseudo_weight * ramp * loss_pseudo
        if anchor is not None:
            drift = sum(((p - a) ** 2).sum() for p, a in zip(network.parameters(), anchor))
            loss = loss + options.pull_to_pretrained * drift
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.state_dict().values(), network.state_dict().values()):
                    if e.dtype.is_floating_point:
                        e.mul_(options.ema_decay).add_(p.detach(), alpha=1 - options.ema_decay)
                    else:
                        e.copy_(p)
        last = {
            "loss": float(loss.detach()),
            "loss_labels": float(loss_labels.detach()),
            "loss_pseudo": float(loss_pseudo.detach()),
        }
        if progress:
            progress("train", step, options.steps, last["loss"])
    if ema is not None:
        network.load_state_dict(ema.state_dict())
    network.eval()
    last["seconds"] = time.monotonic() - started
    return last
