"""`asfda model import`: a model config + weights or a MONAI bundle becomes a new active version, optionally
with reference statistics computed on a few source-like volumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from asfda.datastore import Datastore
from asfda.errors import ConfigError
from asfda.model_store import ReferenceStats
from asfda.weights import LoadReport


@dataclass
class ImportResult:
    version: str
    report: Optional[LoadReport]
    reference: Optional[ReferenceStats] = None
    details: List[str] = field(default_factory=list)

    def summary(self) -> str:
        loaded = self.report.summary() if self.report else "no weights given, freshly initialised"
        lines = [f"imported {self.version}: {loaded}", *self.details]
        if self.reference is not None:
            lines.append(
                f"reference statistics: {len(self.reference.layer_names)} normalisation layers from "
                f"{len(self.reference.volumes)} volume(s) ({', '.join(self.reference.volumes)})"
            )
        return "\n".join(lines)


def import_model(
    store: Datastore,
    config_path: Optional[Path] = None,
    weights: Optional[Path] = None,
    bundle: Optional[Path] = None,
    reference: Optional[Path] = None,
    device: str = "cpu",
) -> ImportResult:
    """Check everything (bundle, weights, reference volumes) before the version is written."""
    from asfda.model_config import ModelConfig
    from asfda.networks import build_network
    from asfda.weights import load_weights

    details: List[str] = []
    if bundle is not None:
        if config_path is not None or weights is not None:
            raise ConfigError("model import takes --bundle or --config/--weights, not both")
        from asfda.bundle import load_bundle

        spec, report = load_bundle(bundle)
        config, network = spec.config, spec.network
        details.append(
            f"bundle {spec.name}: {config.network}, {config.out_channels} labels, patch {config.roi_size}, "
            f"overlap {config.sw_overlap:g}, {config.sw_mode} blending, {config.sw_padding_mode} padding; "
            f"preprocessing {' > '.join(spec.preprocessing) or 'none'}"
        )
        note = f"bundle {spec.name} ({report.summary()})"
    else:
        if config_path is None:
            raise ConfigError("model import needs --config (with optional --weights) or --bundle")
        config = ModelConfig.load(config_path)
        network = build_network(config)
        report = load_weights(network, weights) if weights else None
        note = f"imported ({report.summary() if report else 'fresh weights'})"
    stats = None
    if reference is not None:
        from asfda.reference_stats import compute_reference_stats

        stats = compute_reference_stats(network, config, reference, device)
        network = network.cpu()
    version = store.models.publish(network, config, parent=None, note=note, reference_stats=stats)
    return ImportResult(version, report, stats, details)
