"""`asfda model import --bundle`: a MONAI bundle becomes a new active version, optionally with reference
statistics computed on a few source-like volumes (`--reference`, also taken by a model.json import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from torch import nn

from asfda.models.config import ModelConfig
from asfda.models.store import ReferenceStats
from asfda.models.weights import LoadReport


def reference_line(stats: ReferenceStats) -> str:
    return (
        f"reference statistics: {len(stats.layer_names)} normalisation layers from {len(stats.volumes)} "
        f"volume(s) ({', '.join(stats.volumes)})"
    )


def reference_for(
    network: nn.Module, config: ModelConfig, folder: Optional[Path], device: str = "cpu"
) -> Optional[ReferenceStats]:
    """Reference statistics of the volumes in `folder`, or None without one; the network ends on the CPU."""
    if folder is None:
        return None
    from asfda.models.reference_stats import compute_reference_stats

    stats = compute_reference_stats(network, config, folder, device)
    network.cpu()
    return stats


@dataclass
class ImportResult:
    version: str
    report: LoadReport
    reference: Optional[ReferenceStats] = None
    details: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"imported {self.version}: {self.report.summary()}", *self.details]
        if self.reference is not None:
            lines.append(reference_line(self.reference))
        return "\n".join(lines)


TRUSTED_NOTE = "bundle code trusted (--trust-bundle-code): MONAI's parser builds it, evaluating its expressions"


def import_bundle(
    datastore: Path,
    bundle: Path,
    reference: Optional[Path] = None,
    device: str = "cpu",
    trust_code: bool = False,
    weights: Optional[Path] = None,
) -> ImportResult:
    """Check the bundle, its weights and the reference volumes; only then create the datastore and publish.

    Nothing of the bundle runs unless `trust_code` is set and the bundle needs it (asfda.models.bundle_safety)."""
    from asfda.data.datastore import Datastore
    from asfda.models.bundle import load_bundle

    spec, report = load_bundle(bundle, trust_code, weights)
    config = spec.config
    details = [
        f"bundle {spec.name}: {config.network}, {config.out_channels} labels, patch {config.roi_size}, "
        f"overlap {config.sw_overlap:g}, {config.sw_mode} blending, {config.sw_padding_mode} padding; "
        f"preprocessing {' > '.join(spec.preprocessing) or 'none'}"
    ]
    if spec.weights is not None:
        details.append(spec.weights.line())
    names = list(config.labels)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    details.append(f"labels {shown} (from {spec.label_source})")
    details.extend(spec.settings)
    if config.bundle_code_trusted:
        details.append(f"{TRUSTED_NOTE}, at every load of this version and of those adapted from it")
    elif trust_code:
        details.append("--trust-bundle-code not needed: the bundle asks for no code, asfda built it from plain values")
    note = f"bundle {spec.name} ({report.summary()})" + (f"; {TRUSTED_NOTE}" if config.bundle_code_trusted else "")
    stats = reference_for(spec.network, config, reference, device)
    store = Datastore(datastore, create=True)
    version = store.models.publish(spec.network, config, parent=None, note=note, reference_stats=stats)
    return ImportResult(version, report, stats, details)
