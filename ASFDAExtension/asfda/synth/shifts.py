"""Scanner and protocol shifts of graded severity: contrast, bias field, noise, thick slices."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Set

import numpy as np
import torch
from monai.transforms import RandBiasField
from scipy import ndimage


@dataclass
class DomainShift:
    t2_mix: float = 0.0  # 0 = T1-like contrast, 1 = fully T2-like (tissue contrast inverted)
    bias: float = 0.0  # bias-field polynomial coefficient range
    noise: float = 0.0  # Gaussian noise standard deviation, in units of the head intensity range
    slice_factor: int = 1  # slices averaged along the last axis (thick slices)
    severity: float = 0.0

    def to_dict(self) -> Dict:
        return asdict(self)


def sample_shift(severity: float, rng: np.random.Generator) -> DomainShift:
    """A target-domain shift whose strength grows with `severity` in [0, 1]."""
    severity = float(np.clip(severity, 0.0, 1.0))
    return DomainShift(
        t2_mix=float(np.clip(0.35 + 0.65 * severity + rng.normal(0, 0.05), 0, 1)),
        bias=float(0.1 + 0.3 * severity),
        noise=float(0.01 + 0.05 * severity * rng.uniform(0.5, 1.0)),
        slice_factor=int(1 + round(2 * severity * rng.uniform(0.5, 1.0))),
        severity=severity,
    )


def apply_shift(image: np.ndarray, shift: DomainShift, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    head = ndimage.binary_closing(image > 0.05, iterations=2)
    scale = float(np.percentile(image[head], 99)) if head.any() else 1.0
    t1 = np.clip(image / max(scale, 1e-6), 0, 1.5)
    # T2-like: inside the head, bright becomes dark (fat/white matter) and dark becomes bright (CSF).
    t2 = np.where(head, np.clip(1.2 - t1, 0, 1.5), 0.0)
    out = (1.0 - shift.t2_mix) * t1 + shift.t2_mix * t2
    if shift.bias > 0:
        field = RandBiasField(coeff_range=(shift.bias * 0.5, shift.bias), prob=1.0)
        field.set_random_state(seed=seed)
        out = np.asarray(field(torch.as_tensor(out[None], dtype=torch.float32))[0])
    if shift.slice_factor > 1:
        f = shift.slice_factor
        z = out.shape[-1] // f * f
        thick = out[..., :z].reshape(*out.shape[:-1], z // f, f).mean(-1)
        out[..., :z] = np.repeat(thick, f, axis=-1)
    out = out + rng.normal(0.0, shift.noise, out.shape)
    return out.astype(np.float32)


def source_like(image: np.ndarray, seed: int) -> np.ndarray:
    """Source-domain acquisition: T1 contrast, mild bias and noise."""
    return apply_shift(image, DomainShift(t2_mix=0.0, bias=0.05, noise=0.01), seed)


# The hospital mix: a routine protocol that shifts mildly and a rare one that shifts strongly (severity in [0, 1]).
PROTOCOL_SEVERITY = {"routine": (0.0, 0.4), "rare": (0.85, 1.0)}


def rare_indices(n: int, share: Optional[float], seed: int) -> Set[int]:
    """Which of `n` subjects follow the rare protocol (`share` of them, at least one; None: no protocols)."""
    if share is None:
        return set()
    count = min(n, max(1, int(round(share * n))))
    return {int(i) for i in np.random.default_rng(seed + 7).choice(n, size=count, replace=False)}
