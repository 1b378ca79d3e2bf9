"""Demo data: subjects from real MNI152 anatomy, a T1 source domain and a shifted target domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from asfda.io.volumes import save_float_volume, save_label_volume
from asfda.synth.anatomy import Anatomy
from asfda.synth.deform import random_subject
from asfda.synth.shifts import PROTOCOL_SEVERITY, apply_shift, rare_indices, sample_shift, source_like


@dataclass
class Subject:
    case_id: str
    image: np.ndarray
    label: np.ndarray
    severity: float = 0.0


@dataclass
class DemoData:
    anatomy: Anatomy
    source: List[Subject]
    pool: List[Subject]
    test: List[Subject]
    severity: Dict[str, float] = field(default_factory=dict)
    protocol: Dict[str, str] = field(default_factory=dict)  # case id -> "routine" / "rare" (hospital mix only)


def make_demo_data(
    anatomy: Anatomy,
    n_source: int,
    n_pool: int,
    n_test: int,
    seed: int,
    rare_share: Optional[float] = None,
    rare_share_test: Optional[float] = None,
) -> DemoData:
    """Source, pool and test subjects. Without `rare_share` the target shift's severity is uniform in [0, 1];
    with it, the hospital mix: a routine protocol (mild shifts) and a rare one in `rare_share` of the pool
    (`rare_share_test` of the test set, so the rare protocol's Dice is measurable)."""
    rng = np.random.default_rng(seed)
    seeds = iter(rng.integers(0, 2**31 - 1, size=4 * (n_source + n_pool + n_test)).tolist())
    rare = {
        "target": rare_indices(n_pool, rare_share, seed),
        "test": rare_indices(n_test, rare_share_test if rare_share_test is not None else rare_share, seed + 1),
    }
    protocol: Dict[str, str] = {}

    def subject(prefix: str, index: int, target: bool) -> Subject:
        case_id = f"{prefix}_{index:03d}"
        image, label = random_subject(anatomy.image, anatomy.label, next(seeds))
        if not target:
            return Subject(case_id, source_like(image, next(seeds)), label)
        severity = float(rng.uniform(0.0, 1.0))
        if rare_share is not None:
            protocol[case_id] = "rare" if index in rare[prefix] else "routine"
            low, high = PROTOCOL_SEVERITY[protocol[case_id]]
            severity = low + (high - low) * severity
        return Subject(case_id, apply_shift(image, sample_shift(severity, rng), next(seeds)), label, severity)

    source = [subject("source", i, False) for i in range(n_source)]
    pool = [subject("target", i, True) for i in range(n_pool)]
    test = [subject("test", i, True) for i in range(n_test)]
    return DemoData(anatomy, source, pool, test, {s.case_id: s.severity for s in pool + test}, protocol)


def write_images(subjects: List[Subject], folder: Path, affine: np.ndarray) -> None:
    for s in subjects:
        save_float_volume(folder / f"{s.case_id}.nii.gz", s.image, affine)


def write_labels(subjects: List[Subject], folder: Path, affine: np.ndarray) -> None:
    for s in subjects:
        save_label_volume(folder / f"{s.case_id}.nii.gz", s.label, affine)
