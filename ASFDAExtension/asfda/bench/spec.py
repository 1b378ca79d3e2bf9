"""One benchmark run, described by its effective configuration; the configuration is the cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict

from asfda.adapt import FinetuneOptions, ReliabilityOptions
from asfda.query.strategies import RankingOptions

# The reconstruction's original choices, pinned: ablations are measured from here and the picked
# overrides are applied on top, so cached runs keep their keys when the code defaults move to the pick.
BASELINE_RANKING = {
    "alpha": 0.5,
    "rule": "cluster_coverage",
    "embedding": "multilayer",
    "cold_start_medoid": False,
}
BASELINE_RELIABILITY = {"asd_quantile": 0.5, "distance_quantile": 0.75, "voxel_confidence": 0.9}
# Fine-tuning options the validation split may change (FinetuneOptions fields; "guards" for history's sake).
BASELINE_GUARDS = {"pull_to_pretrained": 0.0, "ema_decay": 0.0, "learning_rate": 1e-3, "freeze_norm_stats": False}


def ranking_defaults() -> Dict[str, Any]:
    return dict(BASELINE_RANKING)


def reliability_defaults() -> Dict[str, Any]:
    return dict(BASELINE_RELIABILITY)


def guard_defaults() -> Dict[str, Any]:
    return dict(BASELINE_GUARDS)


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def code_defaults() -> Dict[str, Dict[str, Any]]:
    """The product defaults in the code now, in the benchmark's terms (to compare with the pick)."""
    r, rel, f = RankingOptions(), ReliabilityOptions(), FinetuneOptions()
    return {
        "ranking": {
            "alpha": r.alpha,
            "rule": _plain(r.rule),
            "embedding": _plain(r.embedding),
            "cold_start_medoid": r.cold_start_medoid,
        },
        "reliability": {
            "asd_quantile": rel.asd_quantile,
            "distance_quantile": rel.distance_quantile,
            "voxel_confidence": rel.voxel_confidence,
        },
        "guards": {
            "pull_to_pretrained": f.pull_to_pretrained,
            "ema_decay": f.ema_decay,
            "learning_rate": f.learning_rate,
            "freeze_norm_stats": f.freeze_norm_stats,
        },
    }


@dataclass
class RunSpec:
    phase: str  # reference / ablation / main / multiround (for the report; not part of the key)
    variant: str  # a readable name of the change from the defaults (not part of the key)
    strategy: str
    k: int
    pseudo: bool
    seed: int
    rounds: int = 1
    ranking: Dict[str, Any] = field(default_factory=ranking_defaults)
    reliability: Dict[str, Any] = field(default_factory=reliability_defaults)
    guards: Dict[str, Any] = field(default_factory=guard_defaults)
    # The cost axis (issue 22): slices asked per pick (0: whole volumes) and whether the validation gate runs.
    slices_per_volume: int = 0
    validation_gate: bool = True  # not "gate": a run's row has its gate verdicts under that name

    def effective(self, fingerprint: str) -> Dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("phase", "variant")}
        # Fields added later leave the keys of runs that keep their defaults as they were (cached runs stay valid);
        # the gate switch is keyed as "gate", the name the first cost-axis runs were cached under.
        if data.pop("validation_gate") is False:
            data["gate"] = False
        if data["slices_per_volume"] == 0:
            del data["slices_per_volume"]
        if self.strategy not in ("asfda", "dkd", "asd"):  # options that do not touch this strategy's picks
            data["ranking"] = {}
        if not self.pseudo:
            data["reliability"] = {}
        data["settings"] = fingerprint
        return data

    def key(self, fingerprint: str) -> str:
        blob = json.dumps(self.effective(fingerprint), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
