"""New subjects from one anatomy by random smooth deformations (labels deformed the same way)."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from monai.transforms import Rand3DElasticd


def random_subject(
    image: np.ndarray, label: np.ndarray, seed: int, strength: float = 1.0
) -> Tuple[np.ndarray, np.ndarray]:
    elastic = Rand3DElasticd(
        keys=["image", "label"],
        sigma_range=(5.0, 8.0),
        magnitude_range=(40.0 * strength, 120.0 * strength),
        prob=1.0,
        rotate_range=(0.12 * strength,) * 3,
        scale_range=(0.08 * strength,) * 3,
        translate_range=(2.0 * strength,) * 3,
        mode=("bilinear", "nearest"),
        padding_mode="zeros",
    )
    elastic.set_random_state(seed=seed)
    out = elastic({"image": torch.as_tensor(image[None]), "label": torch.as_tensor(label[None].astype(np.float32))})
    return (np.asarray(out["image"][0], dtype=np.float32), np.asarray(out["label"][0]).round().astype(np.uint8))
