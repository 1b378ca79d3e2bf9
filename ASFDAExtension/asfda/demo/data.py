"""Demo data: subjects from real MNI152 anatomy, a T1 source domain and a shifted target domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np

from asfda.io.volumes import save_float_volume, save_label_volume
from asfda.synth.anatomy import Anatomy
from asfda.synth.deform import random_subject
from asfda.synth.shifts import apply_shift, sample_shift, source_like


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


def make_demo_data(anatomy: Anatomy, n_source: int, n_pool: int, n_test: int, seed: int) -> DemoData:
    rng = np.random.default_rng(seed)
    seeds = iter(rng.integers(0, 2**31 - 1, size=4 * (n_source + n_pool + n_test)).tolist())

    def subject(case_id: str, target: bool) -> Subject:
        image, label = random_subject(anatomy.image, anatomy.label, next(seeds))
        if not target:
            return Subject(case_id, source_like(image, next(seeds)), label)
        severity = float(rng.uniform(0.0, 1.0))
        return Subject(case_id, apply_shift(image, sample_shift(severity, rng), next(seeds)), label, severity)

    source = [subject(f"source_{i:03d}", False) for i in range(n_source)]
    pool = [subject(f"target_{i:03d}", True) for i in range(n_pool)]
    test = [subject(f"test_{i:03d}", True) for i in range(n_test)]
    return DemoData(anatomy, source, pool, test, {s.case_id: s.severity for s in pool + test})


def write_images(subjects: List[Subject], folder: Path, affine: np.ndarray) -> None:
    for s in subjects:
        save_float_volume(folder / f"{s.case_id}.nii.gz", s.image, affine)


def write_labels(subjects: List[Subject], folder: Path, affine: np.ndarray) -> None:
    for s in subjects:
        save_label_volume(folder / f"{s.case_id}.nii.gz", s.label, affine)
