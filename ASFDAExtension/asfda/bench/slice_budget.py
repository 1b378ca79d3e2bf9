"""The cost axis's runs: whole volumes at k against sparse labels on more volumes at the same annotated slices.

A whole volume costs every slice along the sliced axis (the thickest-slice axis a sparse rank uses too); a sparse
arm of s slices per volume gets budget / s volumes. Runs are ordered by what the targets need first, so a run cut
short (the cache keeps every finished run) still answers them: asfda + PL whole at the largest k and the sparse
arms at a quarter of its slices or less, then the baselines at those budgets, then the rest of the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from asfda.bench.plan import with_overrides
from asfda.bench.settings import BenchSettings
from asfda.bench.spec import RunSpec
from asfda.core.annotation_cost import thickest_axis

__all__ = ["TARGET_SHARE", "SliceArm", "cost_axis_specs", "slices_per_whole_volume"]

TARGET_SHARE = 0.25  # the target: sparse asfda + PL at <= 25 % of whole-volume asfda + PL's slices at the top k
TARGET_BASELINES = ("clasp_pe", "foreground_random")


@dataclass(frozen=True)
class SliceArm:
    whole_k: int  # the whole-volume budget this arm's slice budget equals
    volumes: int
    slices_per_volume: int  # 0: whole volumes

    @property
    def name(self) -> str:
        if self.slices_per_volume == 0:
            return f"whole {self.volumes}"
        return f"sparse {self.volumes} x {self.slices_per_volume}"


def slices_per_whole_volume(settings: BenchSettings) -> int:
    """Slices along the sliced axis of the benchmark's grid (isotropic: its last axis)."""
    return int(settings.shape[thickest_axis((settings.spacing,) * 3)])


def slice_arms(settings: BenchSettings, pool_size: int) -> List[SliceArm]:
    """Every whole and sparse form at each whole-volume budget k; a sparse form needing more volumes than the
    pool holds, or not dividing the budget, is left out (the report lists the forms that ran)."""
    depth = slices_per_whole_volume(settings)
    arms = []
    for k in sorted(settings.budgets):
        arms.append(SliceArm(k, k, 0))
        for s in sorted(settings.slices_per_volume):
            volumes, rest = divmod(k * depth, s)
            if rest == 0 and 0 < volumes <= pool_size:
                arms.append(SliceArm(k, volumes, s))
    return arms


def _priority(spec: RunSpec, top_k: int, target_slices: float, depth: int) -> tuple:
    """(tier, form, seed): the target's asfda + PL arms seed by seed (each seed completes a pairing), then the
    baselines at those forms form by form (each form completes its seeds: a paired test per form as it goes),
    whole volumes first, then sparse by slices per volume; then the rest, seed by seed."""
    slices = spec.k * (spec.slices_per_volume or depth)
    target_form = (spec.slices_per_volume == 0 and spec.k == top_k) or (
        spec.slices_per_volume > 0 and slices <= target_slices
    )
    if target_form and spec.pseudo and spec.strategy == "asfda":
        return (0, spec.seed, 0)
    if target_form and spec.pseudo and spec.strategy in TARGET_BASELINES:
        return (1, spec.slices_per_volume, spec.seed)
    return (2, spec.seed, 0)


def cost_axis_specs(settings: BenchSettings, picked: Dict[str, Dict], pool_size: int) -> List[RunSpec]:
    """Every strategy x pseudo-labels x form x seed, in the order the targets need them."""
    depth = slices_per_whole_volume(settings)
    top_k = max(settings.budgets)
    specs = []
    for seed in range(settings.seeds):
        for arm in slice_arms(settings, pool_size):
            for strategy in settings.strategies:
                for pseudo in settings.cost_pseudo:
                    spec = RunSpec("cost", arm.name, strategy, arm.volumes, bool(pseudo), seed)
                    spec.slices_per_volume, spec.validation_gate = arm.slices_per_volume, settings.cost_gate
                    for section in ("reliability", "guards") if pseudo else ("guards",):
                        spec = with_overrides(spec, section, picked.get(section, {}))
                    if strategy == "asfda":
                        spec = with_overrides(spec, "ranking", picked.get("ranking", {}))
                    specs.append(spec)
    target = TARGET_SHARE * top_k * depth
    return sorted(specs, key=lambda s: _priority(s, top_k, target, depth))
