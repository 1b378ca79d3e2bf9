"""Export a model version as a self-contained folder, and import such a folder back unchanged.

The folder holds `model.json` (the config), `weights.pt` (the state dict, byte for byte), `feature_prior.npz`,
`reference_stats.npz` and a bundle's `bundle/configs/` when the version has them, and `provenance.json`
(version, parent chain, metrics, note, weights checksum).
`model.json` + `weights.pt` also work with `asfda model import --config --weights` and outside ASFDA.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from asfda import __version__
from asfda.core.atomic import fsync_dir
from asfda.core.checksums import sha256_file
from asfda.core.errors import AsfdaError, ModelNotFound
from asfda.models.config import BUNDLE_FOLDER, ModelConfig
from asfda.models.networks import build_network
from asfda.models.store import REFERENCE_STATS, FeaturePrior, ModelStore, ReferenceStats
from asfda.models.weights import load_weights

CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
PRIOR_FILE = "feature_prior.npz"
PROVENANCE_FILE = "provenance.json"


def _lineage(models: ModelStore, version: str) -> List[str]:
    by_version = {v.version: v for v in models.versions()}
    chain = [version]
    while by_version.get(chain[-1]) and by_version[chain[-1]].parent and len(chain) <= len(by_version):
        chain.append(by_version[chain[-1]].parent)
    return chain


def export_version(models: ModelStore, version: str, out: Path) -> Path:
    """Write the version's files into `out` (new or empty folder), all at once via a staging folder."""
    source = models.root / version
    meta_path = source / "meta.json"
    if not version or not meta_path.exists():
        raise ModelNotFound(f"model version {version!r} does not exist")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AsfdaError(f"{out}: export folder exists and is not empty")
    meta = json.loads(meta_path.read_text())
    provenance = {
        "exported_version": version,
        "lineage": _lineage(models, version),  # this version, its parent, ... back to the imported one
        "created": meta.get("created"),
        "note": meta.get("note", ""),
        "metrics": meta.get("metrics", {}),
        "weights_sha256": sha256_file(source / "weights.pt"),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "asfda_version": __version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(source / "config.json", staging / CONFIG_FILE)
        shutil.copyfile(source / "weights.pt", staging / WEIGHTS_FILE)
        if (source / PRIOR_FILE).exists():
            shutil.copyfile(source / PRIOR_FILE, staging / PRIOR_FILE)
        if (source / REFERENCE_STATS).exists():
            shutil.copyfile(source / REFERENCE_STATS, staging / REFERENCE_STATS)
        if (source / BUNDLE_FOLDER).is_dir():  # a bundle version's configs: the export stays self-contained
            shutil.copytree(source / BUNDLE_FOLDER, staging / BUNDLE_FOLDER)
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
        for item in staging.rglob("*"):
            if item.is_file():
                with open(item, "rb") as handle:
                    os.fsync(handle.fileno())
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(staging, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def read_provenance(folder: Path) -> Optional[Dict]:
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def import_export_folder(models: ModelStore, folder: Path, config: ModelConfig) -> tuple:
    """Publish an exported folder as a new active version; returns (version, load report)."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise AsfdaError(f"{folder}: no {WEIGHTS_FILE} (expected a folder written by `asfda model export`)")
    provenance = read_provenance(folder) or {}
    expected = provenance.get("weights_sha256")
    if expected and expected != sha256_file(weights):
        raise AsfdaError(f"{weights}: checksum differs from {PROVENANCE_FILE}; the export was changed or damaged")
    network = build_network(config)
    report = load_weights(network, weights)
    prior = FeaturePrior.load(folder / PRIOR_FILE) if (folder / PRIOR_FILE).exists() else None
    reference = ReferenceStats.load(folder / REFERENCE_STATS) if (folder / REFERENCE_STATS).exists() else None
    origin = provenance.get("exported_version", "an export")
    version = models.publish(
        network,
        config,
        parent=None,
        metrics=provenance.get("metrics", {}),
        feature_prior=prior,
        reference_stats=reference,
        note=f"imported from {folder.name} (exported {origin}, lineage {'<-'.join(provenance.get('lineage', []))})",
    )
    return version, report
