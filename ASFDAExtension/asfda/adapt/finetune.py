"""The fine-tuning loop: MONAI DiceCE on clinician labels + a ramped, masked loss on pseudo-labels.

A sparse clinician label (some slices drawn, the rest not looked at) carries a mask like a pseudo-label's:
its loss counts the annotated voxels only, and its patches are centred on annotated voxels.
"""

from __future__ import annotations

import copy
import enum
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import ThreadBuffer
from monai.losses import DiceCELoss, DiceLoss
from monai.networks.utils import one_hot
from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, RandSpatialCropd, SpatialPadd
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from asfda.models.inference import autocast


class Cancelled(Exception):
    """Raised inside a job when the user asked it to stop."""


@dataclass
class TrainingItem:
    case_id: str
    image: torch.Tensor  # (1, X, Y, Z) prepared image
    label: torch.Tensor  # (1, X, Y, Z) integer labels
    # (1, X, Y, Z) bool: the voxels the loss counts (a pseudo-label's confident ones, a sparse label's annotated
    # ones); None: every voxel counts (a fully annotated clinician label)
    mask: Optional[torch.Tensor] = None


class CropMode(str, enum.Enum):
    # Patches centred on a foreground voxel with probability `foreground_ratio`, else on background
    # (MONAI RandCropByPosNegLabeld): a small organ in a large CT volume is seen in most steps.
    FOREGROUND = "foreground"
    UNIFORM = "uniform"  # patches anywhere in the volume (the first recipe; fine when the ROI covers the volume)


@dataclass
class FinetuneOptions:
    """How one adaptation round trains. Every random choice (which volumes, crops, flips) follows `seed`, so
    the same seed, data and device give the same weights (bit-identical on CPU)."""

    steps: int = 80
    # Adam step size. 1e-3 suits the benchmark's pretrained UNet (docs/benchmarks.md, "fine-tuning recipe":
    # 3e-4 and 1e-4 were measured on its validation split against it). A large pretrained network (SwinUNETR)
    # may want less; the validation gate below keeps a worse version from becoming active either way.
    learning_rate: float = 1e-3
    batch_size: int = 2
    pseudo_weight: float = 0.5
    pseudo_ramp_steps: int = 20  # pseudo-labels join gradually: early steps follow the clinician labels
    pull_to_pretrained: float = 0.0  # L2-SP weight: guards against drifting far from source knowledge
    # > 0: the published model is an EMA (mean teacher) of the student weights. 0.95 (was 0): picked on the
    # validation split of `asfda bench labels` (docs/benchmarks.md) over no guard and an L2-SP pull.
    ema_decay: float = 0.95
    # Left-right flips (axis 0, RAS). None: on unless the label set names lateral structures (left/right
    # kidney: a flip would teach the network to swap them); True/False force it.
    flip_augment: Optional[bool] = None
    crop: CropMode = CropMode.FOREGROUND
    foreground_ratio: float = 0.5  # share of foreground-centred patches with CropMode.FOREGROUND
    # True: batch-norm layers keep the source model's running statistics during fine-tuning (normalise with
    # them, never update them); batches of 2 target patches are a poor estimate of a domain's statistics.
    # False (default): measured on the benchmark's validation split (docs/benchmarks.md).
    freeze_norm_stats: bool = False
    prefetch: int = 2  # batches prepared by a background thread while the current step trains
    seed: int = 0
    # Autocast for the forward passes and losses (bf16 needs no loss scaling). fp32 by default: no training
    # figure under bf16 was measured yet, and the seed-reproducibility guarantee is for fp32 on the CPU.
    precision: str = "fp32"


ProgressFn = Callable[[str, int, int, Optional[float]], None]

_LATERAL_WORDS = {"left", "right", "l", "r", "lt", "rt", "sinister", "dexter"}


def has_lateral_labels(label_names: Sequence[str]) -> bool:
    """Whether a label set names sided structures ("left kidney", "kidney_r", "Right-Lung", "LeftAdrenal")."""
    for name in label_names:
        lowered = name.lower()
        if "left" in lowered or "right" in lowered:
            return True
        if _LATERAL_WORDS & set(re.split(r"[^a-z0-9]+", lowered)):
            return True
    return False


def use_flip(options: FinetuneOptions, label_names: Optional[Sequence[str]]) -> bool:
    if options.flip_augment is not None:
        return options.flip_augment
    return not (label_names and has_lateral_labels(label_names))


def _batch_transform(
    roi_size: List[int], flip: bool, options: FinetuneOptions, seed: int, centre_in_mask: bool = False
) -> Compose:
    keys = ["image", "label", "mask"]
    steps = [SpatialPadd(keys=keys, spatial_size=roi_size)]
    if CropMode(options.crop) == CropMode.FOREGROUND:
        # One crop location for image, label and mask alike: a pseudo-label's mask stays aligned with it.
        ratio = min(max(options.foreground_ratio, 0.0), 1.0)
        # Sparse labels: patch centres (foreground and background) only where the mask says annotated, so
        # whatever the label file holds outside the mask never decides where a patch lies.
        inside = {"image_key": "mask", "image_threshold": 0.5} if centre_in_mask else {}
        steps.append(
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=roi_size,
                pos=ratio,
                neg=1.0 - ratio,
                num_samples=1,
                **inside,
            )
        )
    else:
        steps.append(RandSpatialCropd(keys=keys, roi_size=roi_size, random_size=False))
    if flip:
        steps.append(RandFlipd(keys=keys, prob=0.5, spatial_axis=0))
    transform = Compose(steps)
    transform.set_random_state(seed=seed)  # MONAI's transforms otherwise share one unseeded global stream
    return transform


def _sample(item: TrainingItem, transform: Compose) -> Dict[str, torch.Tensor]:
    out = transform(
        {
            "image": item.image,
            "label": item.label.float(),
            "mask": (item.mask if item.mask is not None else torch.ones_like(item.label, dtype=torch.bool)).float(),
        }
    )
    out = out[0] if isinstance(out, list) else out  # the positive/negative crop returns a list of samples
    return {key: torch.as_tensor(out[key]).as_subclass(torch.Tensor) for key in ("image", "label", "mask")}


class _BatchStream:
    """The batches of one run, in order: volume indices from a seeded generator, crops and flips from a seeded
    transform; clinician and pseudo batches draw from separate streams, so adding pseudo-labels does not
    change which clinician patches a step sees."""

    def __init__(self, items: List[TrainingItem], transform: Compose, batch_size: int, seed: int):
        self.items, self.transform, self.batch_size = items, transform, batch_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> Optional[Dict[str, torch.Tensor]]:
        if not self.items:
            return None
        chosen = self.rng.integers(len(self.items), size=self.batch_size)
        samples = [_sample(self.items[i], self.transform) for i in chosen]
        return {key: torch.stack([s[key] for s in samples]) for key in ("image", "label", "mask")}


def _batches(labeled: _BatchStream, pseudo: _BatchStream, steps: int) -> Iterator:
    try:
        for _ in range(steps):
            yield labeled.next(), pseudo.next()
    except Exception as error:  # handed to the training loop, which re-raises it there
        yield error


def masked_cross_entropy(logits: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    voxel = F.cross_entropy(logits, label[:, 0].long(), reduction="none")
    weight = mask[:, 0]
    return (voxel * weight).sum() / weight.sum().clamp_min(1.0)


def masked_dice_ce(logits: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DiceCE (MONAI's Dice on softmax and one-hot, plus cross-entropy) over the voxels `mask` marks only.

    Unannotated voxels are zero in both the prediction and the one-hot target (no channel, background
    included, sees them) and weigh nothing in the cross-entropy, so their label values cannot matter.
    """
    probs = torch.softmax(logits, dim=1) * mask
    target = one_hot(label.long(), logits.shape[1]) * mask
    dice = DiceLoss(include_background=True)(probs, target)
    return dice + masked_cross_entropy(logits, label, mask)


def freeze_norm_statistics(network: nn.Module) -> int:
    """Put every normalisation layer that tracks running statistics in eval mode (its affine weights still
    train). Returns how many layers were frozen."""
    frozen = 0
    for module in network.modules():
        if isinstance(module, _NormBase) and module.track_running_stats and module.running_mean is not None:
            module.eval()
            frozen += 1
    return frozen


def finetune(
    network: nn.Module,
    roi_size: List[int],
    labeled: List[TrainingItem],
    pseudo: List[TrainingItem],
    options: FinetuneOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    label_names: Optional[Sequence[str]] = None,
) -> Dict[str, float]:
    """Train `network` in place; returns the final loss figures. `label_names` decide the automatic flip."""
    if not labeled:
        raise ValueError("adaptation needs at least one clinician label")
    torch.manual_seed(options.seed)  # dropout and anything else drawing from torch's global generator
    network.to(device).train()
    if options.freeze_norm_stats:
        freeze_norm_statistics(network)
    anchor = [p.detach().clone() for p in network.parameters()] if options.pull_to_pretrained > 0 else None
    ema = copy.deepcopy(network).eval() if options.ema_decay > 0 else None
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    # Any sparse label: every clinician batch takes the masked loss (a fully annotated volume's mask is all
    # ones, its padding zeros). Without one the loss and the crops stay those the recipe was measured with.
    sparse = any(item.mask is not None for item in labeled)
    flip = use_flip(options, label_names)
    seeds = np.random.SeedSequence(options.seed).generate_state(4)
    labeled_transform = _batch_transform(roi_size, flip, options, int(seeds[0]), centre_in_mask=sparse)
    streams = (
        _BatchStream(labeled, labeled_transform, options.batch_size, seeds[1]),
        _BatchStream(pseudo, _batch_transform(roi_size, flip, options, int(seeds[2])), options.batch_size, seeds[3]),
    )
    source = _batches(*streams, options.steps)
    # One producer thread prepares batches in order, so prefetching changes the timing, never the batches.
    batches = ThreadBuffer(source, buffer_size=options.prefetch) if options.prefetch > 0 else source
    started = time.monotonic()
    last: Dict[str, float] = {}
    step = 0
    try:
        for prepared in batches:
            if isinstance(prepared, Exception):
                raise prepared
            step += 1
            if should_stop and should_stop():
                raise Cancelled("adaptation cancelled")
            batch, pb = prepared
            with autocast(device, options.precision):
                logits = network(batch["image"].to(device))
                if sparse:
                    loss_labels = masked_dice_ce(logits.float(), batch["label"].to(device), batch["mask"].to(device))
                else:
                    loss_labels = dice_ce(logits.float(), batch["label"].to(device))
                loss = loss_labels
                loss_pseudo = torch.zeros((), device=device)
                if pb is not None:
                    loss_pseudo = masked_cross_entropy(
                        network(pb["image"].to(device)).float(), pb["label"].to(device), pb["mask"].to(device)
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
    finally:
        if isinstance(batches, ThreadBuffer):
            batches.stop()
    if step != options.steps:
        raise RuntimeError(f"batch preparation stopped after {step} of {options.steps} steps")
    if ema is not None:
        network.load_state_dict(ema.state_dict())
    network.eval()
    last["seconds"] = time.monotonic() - started
    return last
