"""A clinician's cost in annotated slices and estimated minutes: the stated per-slice model the demo and the
label benchmark report (issue 22). Real effort is measured per case where it is spent (the Slicer module);
this model only turns "slices annotated" into a figure a reader can compare arms by.

The figures, and where they come from (docs/benchmarks.md, "Clinician cost"):
- Drawing an organ from scratch in a CT takes 30-60 minutes; we take 45 minutes over about 100 slices that
  show it: 27 s per slice with structure.
- Correcting a model's draft instead was measured 8.7x faster: about 3.1 s per slice with structure.
- A requested slice without structure is confirmed as background at a glance: 2 s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np

SECONDS_PER_SLICE = {"scratch": 27.0, "correct": 27.0 / 8.7}
SECONDS_PER_EMPTY_SLICE = 2.0


@dataclass(frozen=True)
class AnnotationCost:
    slices: int  # slices the annotator looked at and labelled
    structure_slices: int  # of those, slices that show a structure
    minutes: float  # estimated with the per-slice model above

    def to_dict(self) -> Dict:
        return asdict(self)

    def __add__(self, other: AnnotationCost) -> AnnotationCost:
        return AnnotationCost(
            self.slices + other.slices, self.structure_slices + other.structure_slices, self.minutes + other.minutes
        )


NO_COST = AnnotationCost(0, 0, 0.0)


def thickest_axis(spacing) -> int:
    """The axis clinicians page through: the one with the thickest slices; of (nearly) equal ones the last, the
    slice axis of an axial scan on a regular grid. The same axis a sparse rank requests its slices on."""
    values = np.asarray(spacing, dtype=float)
    return int(np.flatnonzero(np.isclose(values, values.max(), rtol=1e-3))[-1])


def volume_cost(label: np.ndarray, axis: int, mode: str = "correct") -> AnnotationCost:
    """The estimated cost of annotating every slice of `label` along `axis` (a whole-volume label).

    Args:
        label: the volume's label map (class ids; 0 is background).
        axis: the axis paged through (`thickest_axis` of the spacing).
        mode: "correct" (editing the model's draft, the Slicer module's way) or "scratch".
    """
    other = tuple(a for a in range(label.ndim) if a != axis)
    with_structure = np.asarray(label).any(axis=other)
    structure = int(with_structure.sum())
    empty = int(with_structure.size - structure)
    minutes = (structure * SECONDS_PER_SLICE[mode] + empty * SECONDS_PER_EMPTY_SLICE) / 60.0
    return AnnotationCost(int(with_structure.size), structure, minutes)


def slices_cost(label: np.ndarray, axis: int, indices, mode: str = "correct") -> AnnotationCost:
    """The estimated cost of annotating only the slices `indices` of `label` along `axis` (a sparse label):
    each requested slice is looked at, the ones that show a structure are drawn, the others confirmed empty."""
    other = tuple(a for a in range(label.ndim) if a != axis)
    with_structure = np.asarray(label).any(axis=other)
    chosen = sorted({int(i) for i in indices})
    if any(i < 0 or i >= with_structure.size for i in chosen):
        raise ValueError(f"slice indices {chosen} outside an axis of {with_structure.size} slices")
    structure = int(with_structure[chosen].sum()) if chosen else 0
    empty = len(chosen) - structure
    minutes = (structure * SECONDS_PER_SLICE[mode] + empty * SECONDS_PER_EMPTY_SLICE) / 60.0
    return AnnotationCost(len(chosen), structure, minutes)
