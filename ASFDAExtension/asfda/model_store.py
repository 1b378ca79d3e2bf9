"""Model versions as folders (weights, config, metrics, parent) with an atomically flipped active pointer."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from asfda.atomic import atomic_write_text, fsync_dir
from asfda.errors import ModelNotFound
from asfda.model_config import ModelConfig
from asfda.networks import build_network
from asfda.weights import load_weights

_VERSION = re.compile(r"^v(\d{4,})$")
ACTIVE_POINTER = "ACTIVE"


@dataclass
class FeaturePrior:
    """Gaussian summary of the source domain's pooled features, for networks without norm statistics."""

    mean: np.ndarray
    var: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, var=self.var)

    @classmethod
    def load(cls, path: Path) -> FeaturePrior:
        data = np.load(path)
        return cls(mean=data["mean"], var=data["var"])


@dataclass
class ModelVersion:
    version: str
    parent: Optional[str]
    created: str
    metrics: Dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class LoadedModel:
    version: str
    config: ModelConfig
    network: nn.Module
    feature_prior: Optional[FeaturePrior]


class ModelStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def versions(self) -> List[ModelVersion]:
        found = []
        for path in sorted(self.root.iterdir()):
            if _VERSION.match(path.name) and (path / "meta.json").exists():
                found.append(ModelVersion(**json.loads((path / "meta.json").read_text())))
        return found

    def active_version(self) -> Optional[str]:
        pointer = self.root / ACTIVE_POINTER
        if not pointer.exists():
            return None
        version = pointer.read_text().strip()
        return version if (self.root / version / "meta.json").exists() else None

    def activate(self, version: str) -> None:
        if not _VERSION.match(version) or not (self.root / version / "meta.json").exists():
            raise ModelNotFound(f"model version {version!r} does not exist")
        atomic_write_text(self.root / ACTIVE_POINTER, version)

    def _next_version(self) -> str:
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def publish(
        self,
        network: nn.Module,
        config: ModelConfig,
        parent: Optional[str],
        metrics: Optional[Dict[str, Any]] = None,
        feature_prior: Optional[FeaturePrior] = None,
        note: str = "",
        activate: bool = True,
    ) -> str:
        """Write a new version folder completely, then rename it into place and flip the pointer."""
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            torch.save(network.state_dict(), staging / "weights.pt")
            config.save(staging / "config.json")
            if feature_prior is not None:
                feature_prior.save(staging / "feature_prior.npz")
            for item in staging.iterdir():
                with open(item, "rb") as handle:
                    os.fsync(handle.fileno())
            while True:
                version = self._next_version()
                meta = ModelVersion(version, parent, datetime.now(timezone.utc).isoformat(), metrics or {}, note)
                (staging / "meta.json").write_text(json.dumps(meta.__dict__, indent=2))
                try:
                    os.rename(staging, self.root / version)  # fails if another writer took the name
                    break
                except OSError:
                    if not (self.root / version).exists():
                        raise
            fsync_dir(self.root)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        if activate:
            self.activate(version)
        return version

    def load(self, version: Optional[str] = None, device: str = "cpu") -> LoadedModel:
        version = version or self.active_version()
        if version is None:
            raise ModelNotFound(f"no active model in {self.root}; import one with `asfda model import`")
        folder = self.root / version
        if not (folder / "meta.json").exists():
            raise ModelNotFound(f"model version {version!r} does not exist")
        config = ModelConfig.load(folder / "config.json")
        network = build_network(config)
        load_weights(network, folder / "weights.pt")
        prior_path = folder / "feature_prior.npz"
        prior = FeaturePrior.load(prior_path) if prior_path.exists() else None
        return LoadedModel(version, config, network.to(device).eval(), prior)

    def cleanup_staging(self) -> None:
        """Remove half-written versions left by a killed writer."""
        for path in self.root.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)
