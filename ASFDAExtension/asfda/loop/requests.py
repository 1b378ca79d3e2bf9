"""Plain requests for the loop's steps, built from a worker job's params or from CLI arguments.

The only place where a face's words become engine options: the worker (`from_params`), the CLI
(`from_args`), the demo and the benchmark (constructors) all go through these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping

from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.options import AdaptOptions
from asfda.adapt.reliability import ReliabilityOptions
from asfda.adapt.validation_gate import GateOptions
from asfda.core.errors import AsfdaError
from asfda.core.names import SliceRule, Strategy
from asfda.query.embedding import EmbeddingKind
from asfda.query.selection import SelectionRule
from asfda.query.slices import SliceOptions
from asfda.query.strategies import RankingOptions
from asfda.scoring.options import ScoringOptions

__all__ = ["AdaptRequest", "RankRequest"]

_RANKING_DEFAULTS = RankingOptions()


@dataclass
class RankRequest:
    """Rank the pool: strategy and budget, plus the selection rule's settings (the benchmark varies them)."""

    strategy: str = Strategy.ASFDA.value
    k: int = 4
    seed: int = 0
    chunk_size: int = ScoringOptions().chunk_size
    alpha: float = _RANKING_DEFAULTS.alpha
    rule: str = _RANKING_DEFAULTS.rule.value
    embedding: str = _RANKING_DEFAULTS.embedding.value
    cold_start_medoid: bool = _RANKING_DEFAULTS.cold_start_medoid
    slices_per_volume: int = 0  # sparse annotation: slices asked per pick; 0: whole volumes
    slice_axis: str = "auto"  # auto (each volume's thickest-slice axis), 0, 1 or 2
    slice_rule: str = SliceRule.EVEN.value

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RankRequest:
        """From a worker rank job's params (worker/schemas.py RankRequest)."""
        return cls(
            strategy=str(params["strategy"]),
            k=int(params["budget_k"]),
            seed=int(params.get("seed", 0)),
            chunk_size=int(params.get("chunk_size") or ScoringOptions().chunk_size),
            slices_per_volume=int(params.get("slices_per_volume") or 0),
            slice_axis=str(params.get("slice_axis", "auto")),
            slice_rule=str(params.get("slice_rule") or SliceRule.EVEN.value),
        )

    @classmethod
    def from_args(cls, args) -> RankRequest:
        """From `asfda rank` arguments."""
        return cls(
            strategy=args.strategy,
            k=args.k,
            seed=args.seed,
            slices_per_volume=args.slices_per_volume,
            slice_axis=str(args.slice_axis),
            slice_rule=args.slice_rule,
        )

    def slice_options(self) -> SliceOptions:
        """The sparse part of the request, checked: one line for a bad count, axis or rule."""
        if self.slices_per_volume < 0:
            raise AsfdaError(f"slices per volume must be 0 (whole volumes) or more, not {self.slices_per_volume}")
        if self.slice_axis not in ("auto", "0", "1", "2"):
            raise AsfdaError(f"slice axis must be auto, 0, 1 or 2, not {self.slice_axis!r}")
        try:
            rule = SliceRule(self.slice_rule)
        except ValueError:
            names = ", ".join(r.value for r in SliceRule)
            raise AsfdaError(f"unknown slice rule {self.slice_rule!r} (choose {names})") from None
        axis = None if self.slice_axis == "auto" else int(self.slice_axis)
        return SliceOptions(per_volume=self.slices_per_volume, axis=axis, rule=rule)

    def ranking_options(self) -> RankingOptions:
        return RankingOptions(
            strategy=Strategy(self.strategy),
            k=self.k,
            alpha=float(self.alpha),
            rule=SelectionRule(self.rule),
            embedding=EmbeddingKind(self.embedding),
            seed=self.seed,
            cold_start_medoid=bool(self.cold_start_medoid),
        )


@dataclass
class AdaptRequest:
    """One adaptation round: steps, seed, pseudo-labels, the validation gate, and recipe overrides."""

    steps: int = FinetuneOptions().steps
    seed: int = 0
    use_pseudo_labels: bool = True
    fill_unannotated_with_pseudo_labels: bool = False  # sparse labels: the teacher fills the unannotated part
    gate_enabled: bool = True
    gate_decide_from_labels: int = GateOptions().decide_from_labels
    # An advisory verdict after the version is published (the product); False: before (the benchmark judges it).
    gate_verdict_after: bool = True
    chunk_size: int = ScoringOptions().chunk_size
    finetune_overrides: Dict[str, Any] = field(default_factory=dict)  # FinetuneOptions fields (the benchmark's guards)
    reliability_overrides: Dict[str, Any] = field(default_factory=dict)  # ReliabilityOptions fields

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AdaptRequest:
        """From a worker adapt job's params (worker/schemas.py AdaptRequest)."""
        request = cls(
            seed=int(params.get("seed", 0)),
            use_pseudo_labels=bool(params.get("use_pseudo_labels", True)),
            fill_unannotated_with_pseudo_labels=bool(params.get("fill_unannotated_with_pseudo_labels", False)),
        )
        if params.get("steps"):
            request.steps = int(params["steps"])
        if params.get("gate_decide_from_labels") is not None:
            request.gate_decide_from_labels = int(params["gate_decide_from_labels"])
        if params.get("chunk_size"):
            request.chunk_size = int(params["chunk_size"])
        return request

    @classmethod
    def from_args(cls, args) -> AdaptRequest:
        """From `asfda adapt` arguments."""
        return cls(
            steps=args.steps,
            seed=args.seed,
            use_pseudo_labels=not args.no_pseudo,
            fill_unannotated_with_pseudo_labels=args.fill_unannotated,
            gate_decide_from_labels=args.gate_decide_from,
        )

    def adapt_options(self, scoring: ScoringOptions) -> AdaptOptions:
        return AdaptOptions(
            finetune=FinetuneOptions(steps=self.steps, seed=self.seed, **self.finetune_overrides),
            reliability=ReliabilityOptions(**self.reliability_overrides),
            use_pseudo_labels=self.use_pseudo_labels,
            fill_unannotated_with_pseudo_labels=self.fill_unannotated_with_pseudo_labels,
            scoring=scoring,
            gate=GateOptions(
                enabled=self.gate_enabled,
                decide_from_labels=self.gate_decide_from_labels,
                verdict_after=self.gate_verdict_after,
            ),
        )
