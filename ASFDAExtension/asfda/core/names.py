"""The engine's torch-free vocabulary: strategy names, slice rules and label tags.

The CLI's choices, the worker's request schema and the benchmark's settings read these, so naming a
strategy or a label tag never imports torch, and a new strategy is added in one place
(`asfda.query.strategies.REGISTRY`, which a test keeps equal to this enum).
"""

from __future__ import annotations

import enum

__all__ = ["LabelTag", "SliceRule", "Strategy", "slice_rule_names", "strategy_names"]


class Strategy(str, enum.Enum):
    ASFDA = "asfda"  # fused DKD + ASD with a coverage-aware selection rule
    DKD = "dkd"
    ASD = "asd"
    RANDOM = "random"
    ENTROPY = "entropy"  # whole-volume mean entropy, top-k
    CORESET = "coreset"  # k-center greedy on the bottleneck feature
    MC_DROPOUT = "mc_dropout"  # epistemic uncertainty from dropout passes, top-k
    # Random, weighted by the model's predicted foreground fraction (never the truth)
    FOREGROUND_RANDOM = "foreground_random"
    BALANCED_ENTROPY = "balanced_entropy"  # mean over classes of the entropy inside each predicted class, top-k
    # In the manner of ClaSP PE: 66 % of the budget split over predicted classes, the rest by entropy, with a
    # log-scale score perturbation that shrinks over rounds
    CLASS_STRATIFIED = "clasp_pe"


class SliceRule(str, enum.Enum):
    """How a sparse rank picks the slices of a volume (asfda.query.slices.REGISTRY, kept equal by a test)."""

    EVEN = "even"  # evenly spaced across the predicted foreground extent
    UNCERTAINTY = "uncertainty"  # the slices of highest mean voxel entropy inside that extent


class LabelTag(str, enum.Enum):
    FINAL = "final"  # from a clinician
    PSEUDO = "pseudo"  # selected, masked model output used for adaptation
    PREDICTION = "prediction"  # plain model output shown to the clinician


def strategy_names() -> list:
    """Every strategy's name, in the enum's order (the CLI's choices and the worker's schema)."""
    return [s.value for s in Strategy]


def slice_rule_names() -> list:
    """Every slice rule's name (the CLI's choices and the worker's schema)."""
    return [r.value for r in SliceRule]
