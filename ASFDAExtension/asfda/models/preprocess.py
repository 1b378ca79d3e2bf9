"""MONAI transforms that bring a volume into the network's space, and back again for predictions."""

from __future__ import annotations

from typing import Optional

import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    NormalizeIntensity,
    Orientation,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacing,
)
from monai.utils import TraceKeys

from asfda.models.bundle_crop import has_crop, replay_on_label
from asfda.models.config import ModelConfig


def spatial_transforms(config: ModelConfig, label: bool = False) -> Compose:
    if config.bundle is not None:  # an imported MONAI bundle brings its own preprocessing
        from asfda.models.bundle_transforms import bundle_spatial_transforms

        return bundle_spatial_transforms(config, label)
    mode = "nearest" if label else "bilinear"
    steps = [
        EnsureChannelFirst(channel_dim="no_channel"),
        Orientation(axcodes=config.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
    ]
    if config.spacing is not None:
        steps.append(Spacing(pixdim=config.spacing, mode=mode))
    return Compose(steps)


def intensity_transform(config: ModelConfig):
    if config.bundle is not None:
        from asfda.models.bundle_transforms import bundle_intensity_transform

        return bundle_intensity_transform(config)
    spec = config.intensity
    if spec.mode == "zscore":
        return NormalizeIntensity()
    if spec.mode == "percentile":
        return ScaleIntensityRangePercentiles(lower=spec.lower, upper=spec.upper, b_min=0.0, b_max=1.0, clip=True)
    if spec.mode == "ct_window":
        return ScaleIntensityRange(a_min=spec.lower, a_max=spec.upper, b_min=0.0, b_max=1.0, clip=True)
    return lambda x: x


def _nnunet():
    """nnU-Net's pipeline, imported only for an nnU-Net version (nnunetv2 is an optional install)."""
    from asfda.models.nnunet_folder import require_nnunet

    require_nnunet()
    from asfda.models import nnunet_pipeline

    return nnunet_pipeline


def prepare_image(volume: MetaTensor, config: ModelConfig) -> MetaTensor:
    """(X, Y, Z) volume -> (1, X', Y', Z') network input; the spatial steps are recorded for inversion."""
    if config.nnunet is not None:
        return _nnunet().prepare_image(volume, config)
    spatial = spatial_transforms(config)(volume)
    return intensity_transform(config)(spatial)


def prepare_label(label: MetaTensor, config: ModelConfig, image: Optional[MetaTensor] = None) -> MetaTensor:
    """(X, Y, Z) label map -> (1, X', Y', Z') on the network's grid. `image` is the same case's prepared image:
    a step whose box follows the image's content (nnU-Net's crop to the non-zero box) is replayed from what the
    image recorded, so label and image stay voxel-aligned."""
    if config.nnunet is not None:
        if image is None:
            raise ValueError("an nnU-Net label needs the prepared image: its crop box follows the image")
        return _nnunet().prepare_label(label, config, image)
    steps = spatial_transforms(config, label=True)
    if config.bundle is not None and has_crop(steps):
        if image is None:
            raise ValueError("a label for a bundle with CropForegroundd needs the prepared image: the box follows it")
        return replay_on_label(steps, label, image)
    return steps(label)


def _carrier(prepared: MetaTensor, channels: torch.Tensor, interpolation: str = "") -> MetaTensor:
    """`channels` dressed with `prepared`'s geometry and recorded steps, ready for MONAI's inverse."""
    carrier = MetaTensor(
        channels.float(), affine=prepared.affine.clone(), meta={k: v for k, v in prepared.meta.items() if k != "affine"}
    )
    ops = []
    for op in prepared.applied_operations:
        # The inverse runs on fresh transform objects; TraceKeys.NONE tells MONAI not to match object ids.
        op = {**op, TraceKeys.ID: TraceKeys.NONE}
        if interpolation and isinstance(op.get(TraceKeys.EXTRA_INFO), dict) and "mode" in op[TraceKeys.EXTRA_INFO]:
            op[TraceKeys.EXTRA_INFO] = {**op[TraceKeys.EXTRA_INFO], "mode": interpolation}
        ops.append(op)
    carrier.applied_operations = ops
    return carrier


def to_original_space(prepared: MetaTensor, channels: torch.Tensor, config: ModelConfig) -> MetaTensor:
    """Map (C, X', Y', Z') continuous maps computed on `prepared` back to the original image grid."""
    if config.nnunet is not None:
        return _nnunet().to_original_space(prepared, channels, config)
    return spatial_transforms(config).inverse(_carrier(prepared, channels))


def labels_to_original_space(prepared: MetaTensor, labels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Map an (X', Y', Z') class-id map back with nearest neighbour: the inverse resampling recorded on the
    image was bilinear, which would invent ids between neighbouring classes (1 | 3 -> 2 on the border)."""
    if config.nnunet is not None:
        return _nnunet().labels_to_original_space(prepared, labels, config)
    restored = spatial_transforms(config, label=True).inverse(_carrier(prepared, labels[None], "nearest"))
    return torch.as_tensor(restored)[0].round().to(torch.uint8)


def probabilities_to_labels(
    prepared: MetaTensor, probs: torch.Tensor, config: ModelConfig, chunk: int = 8
) -> torch.Tensor:
    """(X, Y, Z) uint8 class ids on the original grid from (C, X', Y', Z') probabilities: each channel mapped back
    with the interpolation its preprocessing recorded, then the argmax. The inverse resamples each channel on its
    own, so `chunk` channels at a time with a running maximum gives the same ids (first maximum wins, as argmax)
    while holding two grids plus `chunk` channels instead of all C on the original grid."""
    best_value: torch.Tensor = torch.empty(0)
    best_class: torch.Tensor = torch.empty(0)
    for start in range(0, probs.shape[0], chunk):
        restored = torch.as_tensor(to_original_space(prepared, probs[start : start + chunk], config))
        value, index = restored.max(dim=0)
        index = index.to(torch.uint8) + start
        if start == 0:
            best_value, best_class = value, index
        else:
            better = value > best_value
            best_value = torch.where(better, value, best_value)
            best_class = torch.where(better, index, best_class)
    return best_class


def logits_to_labels(prepared: MetaTensor, logits: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(X, Y, Z) uint8 class ids on the original grid from network-space logits, by the model's own export
    (nnU-Net resamples logits, not probabilities, before its argmax)."""
    if config.nnunet is not None:
        return _nnunet().logits_to_labels(prepared, logits, config)
    return labels_to_original_space(prepared, logits.argmax(dim=0).to(torch.uint8), config)
