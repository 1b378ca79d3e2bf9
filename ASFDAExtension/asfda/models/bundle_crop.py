"""A bundle's `CropForeground(d)` as a recorded, replayable step.

On the image the crop runs as in the bundle's pipeline: MONAI's own cropper, on the image as the bundle has it at
that point (the voxel-wise intensity steps listed before the crop applied, e.g. a CT window whose 0 is the
foreground threshold, and its padding of the windowed image). The crop is recorded with its box, so MONAI's
inverse maps predictions back, and a label map brought into network space replays the image's box
(`replay_on_label`): a label alone has no image content to compute it from.
"""

from __future__ import annotations

import copy
from typing import Any, List, Sequence, Tuple

import numpy as np
from monai.data import MetaTensor
from monai.transforms import Compose, CropForeground, CropForegroundd, InvertibleTransform
from monai.utils import TraceKeys

BOX_KEY = "asfda_box"  # in the crop's recorded extra_info: (box_start, box_end) on the grid before the crop
# Intensity steps that act voxel by voxel: the same before or after a crop. A step with statistics over the
# volume (NormalizeIntensity, percentiles) gives other values on the cropped volume.
POINTWISE_STEPS = {"ScaleIntensityRange", "ThresholdIntensity"}


class ForegroundCrop(InvertibleTransform):
    """MONAI's CropForeground with the bundle's settings. On the image it first runs `source`, the intensity steps
    the bundle lists before the crop (asfda then leaves them out of the intensity steps it runs after)."""

    def __init__(self, step: Any, source: Sequence[Any], image_key: str, label: bool = False):
        if isinstance(step, CropForegroundd):
            if step.source_key != image_key:
                raise ValueError(f"CropForegroundd source_key {step.source_key!r} is not the image key {image_key!r}")
            self.cropper: CropForeground = step.cropper
            self.mode = step.mode[list(step.keys).index(image_key)] if image_key in step.keys else None
        else:
            self.cropper, self.mode = step, None
        self.source = Compose(list(source))
        self.label = label

    def __call__(self, img: MetaTensor) -> MetaTensor:
        if self.label:
            raise ValueError("CropForeground on a label map needs the image's box: use replay_on_label")
        # The bundle's order: its intensity steps before the crop, then the crop, which pads (margin, k_divisible)
        # the transformed image with the bundle's padding mode.
        source = self.source(img) if self.source.transforms else img
        start, end = self.cropper.compute_bounding_box(source)
        return self._crop(source, start, end)

    def _crop(self, img: MetaTensor, start, end) -> MetaTensor:
        out = self.cropper.crop_pad(img, start, end, self.mode)
        if isinstance(out, MetaTensor) and out.applied_operations:
            out.applied_operations[-1][TraceKeys.EXTRA_INFO][BOX_KEY] = ([int(s) for s in start], [int(e) for e in end])
        return out

    def replay(self, label: MetaTensor, box: Tuple[List[int], List[int]]) -> MetaTensor:
        return self._crop(label, np.asarray(box[0]), np.asarray(box[1]))

    def inverse(self, data: MetaTensor) -> MetaTensor:
        # MONAI's inverse pops the nested padding record out of the recorded op; the record is shared by every
        # carrier made from the prepared image (channels go back a few at a time), so each inverse gets its own
        # copy, its padding matched by class like the other steps (TraceKeys.NONE), not by object id.
        op = data.applied_operations[-1]
        extra = copy.deepcopy(op[TraceKeys.EXTRA_INFO])
        extra["pad_info"] = {**extra["pad_info"], TraceKeys.ID: TraceKeys.NONE}
        data.applied_operations[-1] = {**op, TraceKeys.EXTRA_INFO: extra}
        return self.cropper.inverse(data)


def has_crop(compose: Compose) -> bool:
    return any(isinstance(t, ForegroundCrop) for t in compose.transforms)


def replay_on_label(compose: Compose, label: MetaTensor, image: MetaTensor) -> MetaTensor:
    """Run the label through the spatial steps, each crop with the box the prepared `image` recorded."""
    boxes = [
        op[TraceKeys.EXTRA_INFO][BOX_KEY]
        for op in image.applied_operations
        if isinstance(op.get(TraceKeys.EXTRA_INFO), dict) and BOX_KEY in op[TraceKeys.EXTRA_INFO]
    ]
    crops = [t for t in compose.transforms if isinstance(t, ForegroundCrop)]
    if len(boxes) != len(crops):
        raise ValueError(f"the image recorded {len(boxes)} crop box(es), the preprocessing has {len(crops)}")
    out, pending = label, iter(boxes)
    for step in compose.transforms:
        out = step.replay(out, next(pending)) if isinstance(step, ForegroundCrop) else step(out)
    return out
