"""Which runs a benchmark consists of, phase by phase, and how the validation split picks the default."""

from __future__ import annotations

import copy
from typing import Dict, List, Sequence, Tuple

import numpy as np

from asfda.bench.settings import BenchSettings
from asfda.bench.spec import BASELINE_GUARDS, BASELINE_RANKING, BASELINE_RELIABILITY, RunSpec, code_defaults

# Each ablation changes ONE reconstructed choice of the default: (group, variant name, section, overrides).
ABLATIONS: List[Tuple[str, str, str, Dict]] = [
    ("selection rule", "rule=top_k", "ranking", {"rule": "top_k"}),
    ("selection rule", "rule=greedy_distance", "ranking", {"rule": "greedy_distance"}),
    ("selection rule", "rule=density", "ranking", {"rule": "density"}),
    ("selection rule", "cold_start_medoid", "ranking", {"rule": "cluster_coverage", "cold_start_medoid": True}),
    ("embedding", "embedding=bottleneck", "ranking", {"embedding": "bottleneck"}),
    ("embedding", "embedding=norm_stats", "ranking", {"embedding": "norm_stats"}),
    ("alpha", "alpha=0.25", "ranking", {"alpha": 0.25}),
    ("alpha", "alpha=0.75", "ranking", {"alpha": 0.75}),
    ("pseudo-label reliability", "asd_quantile=0.25", "reliability", {"asd_quantile": 0.25}),
    ("pseudo-label reliability", "distance_quantile=1.0", "reliability", {"distance_quantile": 1.0}),
    ("pseudo-label voxel mask", "voxel_confidence=0 (no mask)", "reliability", {"voxel_confidence": 0.0}),
    ("forgetting guard", "pull_to_pretrained=0.01", "guards", {"pull_to_pretrained": 0.01}),
    ("forgetting guard", "ema_decay=0.95", "guards", {"ema_decay": 0.95}),
    # The recipe for pretrained networks (issue 10): step size and whether batch norm keeps source statistics.
    ("learning rate", "learning_rate=3e-4", "guards", {"learning_rate": 3e-4}),
    ("learning rate", "learning_rate=1e-4", "guards", {"learning_rate": 1e-4}),
    ("batch-norm statistics", "freeze_norm_stats", "guards", {"freeze_norm_stats": True}),
]
# The knowledge source, the ASD foreground rule and the complementary rule were ablations of the earlier
# in-benchmark loop; the product's rank_pool chooses the first two itself and passes no reliability to
# the third, so the datastore path cannot vary them (their earlier results: docs/benchmarks.md).


# Baselines recent 3D active-learning studies found hard to beat: in the headline family next to random.
HARD_BASELINES = ("foreground_random", "balanced_entropy")


def with_overrides(spec: RunSpec, section: str, overrides: Dict) -> RunSpec:
    out = copy.deepcopy(spec)
    getattr(out, section).update(overrides)
    return out


def reference_specs(settings: BenchSettings, pool_size: int) -> List[RunSpec]:
    specs = [RunSpec("reference", "unadapted", "none", 0, False, 0)]
    # The whole pool labelled: what the labels could give at most with this recipe.
    specs += [RunSpec("reference", "whole pool labelled", "random", pool_size, False, s) for s in range(2)]
    return specs


def ablation_specs(settings: BenchSettings) -> List[RunSpec]:
    k = settings.ablation_budget
    specs = []
    for seed in range(settings.ablation_seeds):
        base = RunSpec("ablation", "default", "asfda", k, True, seed)
        specs.append(base)
        for _, name, section, overrides in ABLATIONS:
            variant = with_overrides(base, section, overrides)
            variant.variant = name
            specs.append(variant)
    return specs


def pick_default(rows: Sequence[Dict]) -> Tuple[Dict[str, Dict], List[Dict]]:
    """Per ablation group, switch from the default only when the variant's paired gain on the VALIDATION
    split is positive and larger than its standard error over seeds. Returns (overrides per section, log)."""
    by_variant: Dict[str, Dict[int, float]] = {}
    for row in rows:
        if row["phase"] == "ablation":
            by_variant.setdefault(row["variant"], {})[row["seed"]] = row["val_dice"]
    default = by_variant.get("default", {})
    chosen: Dict[str, Dict] = {"ranking": {}, "reliability": {}, "guards": {}}
    log = []
    for group in dict.fromkeys(g for g, *_ in ABLATIONS):
        best = None
        for g, name, section, overrides in ABLATIONS:
            scores = by_variant.get(name, {})
            seeds = sorted(set(scores) & set(default))
            if g != group or len(seeds) < 2:
                continue
            diff = np.array([scores[s] - default[s] for s in seeds])
            gain, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
            log.append({"group": group, "variant": name, "val_gain": gain, "se": se, "seeds": len(seeds)})
            if gain > 0 and gain > se and (best is None or gain > best[0]):
                best = (gain, section, overrides, name)
        if best:
            chosen[best[1]].update(best[2])
            log.append({"group": group, "variant": best[3], "chosen": True})
    return chosen, log


def code_pick() -> Dict[str, Dict]:
    """The overrides that turn the pinned original choices into the code defaults (the pick that landed):
    the recipe to run when the ablation phase that picks it is skipped."""
    baseline = {"ranking": BASELINE_RANKING, "reliability": BASELINE_RELIABILITY, "guards": BASELINE_GUARDS}
    return {
        section: {k: v for k, v in values.items() if baseline[section].get(k) != v}
        for section, values in code_defaults().items()
    }


def _arm(strategy: str, k: int, pseudo: bool, seed: int, picked: Dict[str, Dict]) -> RunSpec:
    spec = RunSpec("main", "picked default", strategy, k, pseudo, seed)
    for section in ("reliability", "guards") if pseudo else ("guards",):
        spec = with_overrides(spec, section, picked.get(section, {}))
    if strategy == "asfda":
        spec = with_overrides(spec, "ranking", picked.get("ranking", {}))
    return spec


def headline_specs(settings: BenchSettings, picked: Dict[str, Dict]) -> List[RunSpec]:
    """Only the arms of the headline comparisons, `headline_seeds` each: asfda + PL, random + PL and random
    without PL at every budget k, random without PL at 2k, and the hard baselines + PL; of those, the arms
    whose strategy is in `settings.strategies`."""
    specs = []
    for seed in range(settings.headline_seeds):
        for k in sorted(settings.budgets):
            arms = [("asfda", k, True), ("random", k, True), ("random", k, False), ("random", 2 * k, False)]
            arms += [(baseline, k, True) for baseline in HARD_BASELINES]
            # --strategies narrows the arms (e.g. a costly source network: asfda against random only)
            arms = [arm for arm in arms if arm[0] in settings.strategies]
            specs += [_arm(strategy, budget, pseudo, seed, picked) for strategy, budget, pseudo in arms]
    return specs


def main_specs(settings: BenchSettings, picked: Dict[str, Dict]) -> List[RunSpec]:
    """Every strategy x budget x pseudo on/off; the picked recipe (reliability, guards) for every arm."""
    specs = []
    order = sorted(settings.budgets, key=lambda b: (b not in (2, 4), b))  # the headline budgets first
    for k in order:
        for seed in range(settings.seeds_for(k)):
            for strategy in settings.strategies:
                for pseudo in (True, False):
                    spec = RunSpec("main", "picked default", strategy, k, pseudo, seed)
                    for section in ("reliability", "guards"):
                        spec = with_overrides(spec, section, picked.get(section, {}))
                    if strategy == "asfda":
                        spec = with_overrides(spec, "ranking", picked.get("ranking", {}))
                    specs.append(spec)
    # Random without pseudo-labels at twice the largest budget: target (a) compares k with 2k.
    top = max(settings.budgets)
    for seed in range(settings.seeds_for(2 * top)):
        spec = RunSpec("main", "picked default", "random", 2 * top, False, seed)
        specs.append(with_overrides(spec, "guards", picked.get("guards", {})))
    # The headline arms (asfda + PL, random + PL at k, random without PL at 2k) get extra seeds: their
    # differences are small next to the fine-tuning noise, so they need the most pairs.
    for k in order:
        for seed in range(settings.seeds_for(k), settings.headline_seeds):
            for strategy, budget, pseudo in (("asfda", k, True), ("random", k, True), ("random", 2 * k, False)):
                spec = RunSpec("main", "picked default", strategy, budget, pseudo, seed)
                for section in ("reliability", "guards") if pseudo else ("guards",):
                    spec = with_overrides(spec, section, picked.get(section, {}))
                if strategy == "asfda":
                    spec = with_overrides(spec, "ranking", picked.get("ranking", {}))
                specs.append(spec)
    return specs


def multiround_specs(settings: BenchSettings, picked: Dict[str, Dict]) -> List[RunSpec]:
    rounds, per_round = settings.multiround
    total = rounds * per_round
    specs = []
    for seed in range(settings.seeds_for(total)):
        for strategy in ("asfda", "random"):
            for r in (rounds, 1):  # one-shot of the same total next to it (shared with the main grid)
                spec = RunSpec("multiround", f"{r} round(s)", strategy, total, True, seed, rounds=r)
                for section in ("reliability", "guards"):
                    spec = with_overrides(spec, section, picked.get(section, {}))
                if strategy == "asfda":
                    spec = with_overrides(spec, "ranking", picked.get("ranking", {}))
                specs.append(spec)
    return specs
