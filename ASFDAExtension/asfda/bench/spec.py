"""One benchmark run, described by its effective configuration; the configuration is the cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict

from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.reliability import ReliabilityOptions
from asfda.query.asd import ForegroundRule
from asfda.query.dkd import KnowledgeSource
from asfda.query.strategies import RankingOptions

# Signal options are not part of RankingOptions: they change how the pool is scored, not how it is ranked.
SIGNAL_DEFAULTS = {"knowledge_source": KnowledgeSource.NORM_STATS.value, "asd_rule": ForegroundRule.OTSU.value}


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def ranking_defaults() -> Dict[str, Any]:
    d = RankingOptions()
    return {
        "alpha": d.alpha,
        "rule": _plain(d.rule),
        "embedding": _plain(d.embedding),
        "cold_start_medoid": d.cold_start_medoid,
        **SIGNAL_DEFAULTS,
    }


def reliability_defaults() -> Dict[str, Any]:
    d = ReliabilityOptions()
    return {
        "asd_quantile": d.asd_quantile,
        "distance_quantile": d.distance_quantile,
        "voxel_confidence": d.voxel_confidence,
    }


def guard_defaults() -> Dict[str, Any]:
    d = FinetuneOptions()
    return {"pull_to_pretrained": d.pull_to_pretrained, "ema_decay": d.ema_decay}


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

    def effective(self, fingerprint: str) -> Dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("phase", "variant")}
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
