"""Subjects for the benchmark: a T1-like source domain and a shifted target domain, tagged by anatomy.

The source model sees only some anatomies; the target pool, validation and test sets are drawn from
all of them with their own deformation seeds, so an anatomy the model never saw is a subgroup to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from asfda.demo.data import Subject
from asfda.synth.anatomy import Anatomy
from asfda.synth.deform import random_subject
from asfda.synth.shifts import PROTOCOL_SEVERITY, apply_shift, rare_indices, sample_shift, source_like


@dataclass
class Cohort:
    subjects: List[Subject]
    anatomy: Dict[str, str]  # case id -> anatomy name
    severity: Dict[str, float]
    protocol: Dict[str, str] = field(default_factory=dict)  # case id -> "routine" / "rare" (hospital mix only)


ROUTINE_SEVERITY, RARE_SEVERITY = PROTOCOL_SEVERITY["routine"], PROTOCOL_SEVERITY["rare"]  # the hospital mix


def _subjects(
    anatomies: List[Anatomy], per_anatomy: int, prefix: str, seed: int, target: bool, rare_share: Optional[float] = None
) -> Cohort:
    """`rare_share` None: severity uniform in [0, 1]; else the hospital mix with that share of rare volumes."""
    rng = np.random.default_rng(seed)
    rare = rare_indices(len(anatomies) * per_anatomy, rare_share, seed)
    subjects, anatomy_of, severity, protocol = [], {}, {}, {}
    for a_index, anatomy in enumerate(anatomies):
        for i in range(per_anatomy):
            case_id = f"{prefix}_{anatomy.name}_{i:02d}"
            image, label = random_subject(anatomy.image, anatomy.label, int(rng.integers(2**31 - 1)))
            if target:
                sev = float(rng.uniform(0.0, 1.0))
                if rare_share is not None:
                    is_rare = a_index * per_anatomy + i in rare
                    low, high = RARE_SEVERITY if is_rare else ROUTINE_SEVERITY
                    sev, protocol[case_id] = low + (high - low) * sev, "rare" if is_rare else "routine"
                image = apply_shift(image, sample_shift(sev, rng), int(rng.integers(2**31 - 1)))
            else:
                sev = 0.0
                image = source_like(image, int(rng.integers(2**31 - 1)))
            subjects.append(Subject(case_id, image, label, sev))
            anatomy_of[case_id], severity[case_id] = anatomy.name, sev
    return Cohort(subjects, anatomy_of, severity, protocol)


def source_cohort(anatomies: List[Anatomy], names, per_anatomy: int, seed: int) -> Cohort:
    chosen = [a for a in anatomies if a.name in names] or anatomies[:1]
    return _subjects(chosen, per_anatomy, "source", seed * 10 + 1, target=False)


def target_cohort(
    anatomies: List[Anatomy], per_anatomy: int, split: str, seed: int, rare_share: Optional[float] = None
) -> Cohort:
    # Distinct seed streams per split keep pool, validation and test subjects apart.
    offset = {"val": 2, "test": 3}.get(split, 4)
    return _subjects(anatomies, per_anatomy, split, seed * 10 + offset, True, rare_share)


def pool_cohort(
    anatomies: List[Anatomy], per_anatomy: int, data_seed: int, replicate: int, rare_share: Optional[float] = None
) -> Cohort:
    seed = data_seed * 1000 + 100 + replicate
    return _subjects(anatomies, per_anatomy, f"pool{replicate}", seed, True, rare_share)
