"""The options of one adaptation round (fine-tuning, pseudo-label reliability, scoring, validation gate)."""

from __future__ import annotations

from dataclasses import dataclass, field

from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.reliability import ReliabilityOptions
from asfda.adapt.validation_gate import GateOptions
from asfda.scoring.options import ScoringOptions

__all__ = ["AdaptOptions"]


@dataclass
class AdaptOptions:
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    reliability: ReliabilityOptions = field(default_factory=ReliabilityOptions)
    use_pseudo_labels: bool = True
    # Sparse labels: the teacher's confident voxels fill the part of a sparsely labelled volume nobody
    # annotated, as pseudo-labels (weighted and ramped like them). Off: only annotated voxels train.
    fill_unannotated_with_pseudo_labels: bool = False
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    gate: GateOptions = field(default_factory=GateOptions)
