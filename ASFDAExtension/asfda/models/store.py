"""Model versions as folders (weights, config, metrics, parent) with an atomically flipped active pointer."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from asfda.core.atomic import atomic_write_text, fsync_dir
from asfda.core.errors import ModelNotFound
from asfda.core.file_lock import exclusive
from asfda.models.config import BUNDLE_FOLDER, ModelConfig
from asfda.models.content_id import FileRecords, folder_content_id
from asfda.models.inference import named_norm_layers_with_stats
from asfda.models.networks import build_network
from asfda.models.weights import load_weights

_VERSION = re.compile(r"^v(\d{4,})$")
ACTIVE_POINTER = "ACTIVE"
ACTIVE_LOCK = ".active.lock"  # serialises every read-compare-write of ACTIVE (people and finished jobs)
# How many times a person chose the active version (activate, import). A job records it when it starts: a
# choice made while it ran stands even when it names the job's parent again (rolled back and forth, or the
# active version confirmed), which comparing ACTIVE alone cannot tell from "nobody chose".
ACTIVE_CHOICES = "ACTIVE.choices"
REFERENCE_STATS = "reference_stats.npz"


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
class ReferenceStats:
    """Per-channel mean and variance of the input of every normalisation layer on source-like volumes.

    Computed once at import and copied unchanged into every adapted version, so DKD keeps measuring the
    distance from the source domain rather than from the last adaptation round.
    """

    layer_names: List[str]
    means: List[np.ndarray]
    variances: List[np.ndarray]
    volumes: List[str] = field(default_factory=list)  # the reference volumes' file names, for provenance
    # "volumes": measured on source-like volumes (`--reference`); "running_stats": a batch-norm network's own
    # running statistics, frozen when it was imported (so adaptation moving the buffers cannot move DKD's origin)
    origin: str = "volumes"

    def as_dict(self) -> Dict[str, tuple]:
        return {name: (m, v) for name, m, v in zip(self.layer_names, self.means, self.variances)}

    def save(self, path: Path) -> None:
        arrays = {f"mean_{i}": m for i, m in enumerate(self.means)}
        arrays.update({f"var_{i}": v for i, v in enumerate(self.variances)})
        meta = json.dumps({"layer_names": self.layer_names, "volumes": self.volumes, "origin": self.origin})
        with open(path, "wb") as handle:  # a file object: np.savez would append .npz to a plain name
            np.savez(handle, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: Path) -> ReferenceStats:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            n = len(meta["layer_names"])
            means = [data[f"mean_{i}"].astype(np.float64) for i in range(n)]
            variances = [data[f"var_{i}"].astype(np.float64) for i in range(n)]
        return cls(meta["layer_names"], means, variances, meta.get("volumes", []), meta.get("origin", "volumes"))


def frozen_running_stats(network: nn.Module) -> Optional[ReferenceStats]:
    """A batch-norm network's running statistics as reference statistics, or None when it has none."""
    layers = named_norm_layers_with_stats(network)
    if not layers:
        return None
    return ReferenceStats(
        [name for name, _ in layers],
        [m.running_mean.detach().double().cpu().numpy() for _, m in layers],
        [m.running_var.detach().double().cpu().numpy() for _, m in layers],
        origin="running_stats",
    )


@dataclass
class ModelVersion:
    version: str
    parent: Optional[str]
    created: str
    metrics: Dict[str, Any] = field(default_factory=dict)
    note: str = ""
    bundle_code_trusted: bool = False  # built by MONAI's parser from a bundle imported with --trust-bundle-code
    # The validation gate's verdict on this version (asfda.adapt.validation_gate.GateDecision.to_dict()).
    gate: Dict[str, Any] = field(default_factory=dict)
    # Why a finished adaptation left this version inactive although its gate passed (empty: it did not).
    not_activated: str = ""
    content_id: Optional[str] = None  # sha256 of the folder's files at publish (asfda.models.content_id)
    # ModelStore.active_choice() when the job that trained this version read its parent (None: not recorded).
    started_at_choice: Optional[int] = None
    content_files: FileRecords = field(default_factory=dict)

    def gate_summary(self) -> str:
        """The gate's verdict in a few words ("worse, advisory"); empty for a version no gate judged."""
        verdict = self.gate.get("verdict")
        if not verdict or verdict == "not gated":
            return verdict or ""
        return f"{verdict}, {'binding' if self.gate.get('binding') else 'advisory'}"

    @classmethod
    def from_dict(cls, meta: Dict[str, Any]) -> ModelVersion:
        # Keys written by a newer asfda are kept on disk but not needed here.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in known})


@dataclass
class LoadedModel:
    version: str
    config: ModelConfig
    network: nn.Module
    feature_prior: Optional[FeaturePrior]
    reference_stats: Optional[ReferenceStats] = None
    content_id: str = ""  # of the files this network and config were loaded from


def _fsync_tree(folder: Path) -> None:
    """fsync every file and directory under `folder` (deepest first), so a power cut after the rename
    cannot leave a version with a zero-length file or a missing entry."""
    for item in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        elif item.is_dir():
            fsync_dir(item)
    fsync_dir(folder)


class ModelStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def versions(self) -> List[ModelVersion]:
        found = []
        for path in sorted(self.root.iterdir()):
            if _VERSION.match(path.name) and (path / "meta.json").exists():
                found.append(ModelVersion.from_dict(json.loads((path / "meta.json").read_text())))
        return found

    def active_version(self) -> Optional[str]:
        pointer = self.root / ACTIVE_POINTER
        if not pointer.exists():
            return None
        version = pointer.read_text().strip()
        return version if (self.root / version / "meta.json").exists() else None

    def _check_exists(self, version: str) -> None:
        if not _VERSION.match(version) or not (self.root / version / "meta.json").exists():
            raise ModelNotFound(f"model version {version!r} does not exist")

    def _choices(self) -> int:
        path = self.root / ACTIVE_CHOICES
        try:
            return int(path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def active_choice(self) -> Tuple[Optional[str], int]:
        """(the active version, how many choices people made so far), read together: what a job starts from."""
        with exclusive(self.root / ACTIVE_LOCK):
            return self.active_version(), self._choices()

    def activate(self, version: str) -> None:
        """Make `version` active whatever is active now: a person's choice (rollback) is unconditional, and
        counted, so a job that started before it never activates over it."""
        self._check_exists(version)
        with exclusive(self.root / ACTIVE_LOCK):
            # The count first: a crash between the two leaves a choice counted, never one uncounted.
            atomic_write_text(self.root / ACTIVE_CHOICES, str(self._choices() + 1))
            atomic_write_text(self.root / ACTIVE_POINTER, version)

    def activate_if(self, version: str, expected_active: Optional[str]) -> bool:
        """Compare-and-swap: make `version` active only while `expected_active` still is.

        A finished adaptation passes its parent: if a person activated another version while it trained
        (a rollback), the rollback stands and this returns False.
        """
        self._check_exists(version)
        with exclusive(self.root / ACTIVE_LOCK):
            if self.active_version() != expected_active:
                return False
            atomic_write_text(self.root / ACTIVE_POINTER, version)
            return True

    def activate_over_parent(self, version: str) -> str:
        """Activate a newly trained `version` by compare-and-swap against its parent; "" when it became active.

        Otherwise the active version changed while it trained, or a person chose one (even its parent again)
        since its job started (`started_at_choice`): that choice stands, and the reason is returned and
        written into the version's meta.json (`not_activated`, note) for every face to show; the check and
        that record are one critical section, so the record never contradicts ACTIVE.
        """
        meta = self.meta(version)
        with exclusive(self.root / ACTIVE_LOCK):
            now = self.active_version()
            chosen_since = meta.started_at_choice is not None and self._choices() != meta.started_at_choice
            if now == meta.parent and not chosen_since:
                atomic_write_text(self.root / ACTIVE_POINTER, version)
                return ""
            if now != meta.parent:
                reason = (
                    f"the active version changed from its parent {meta.parent} to {now} while {version} was "
                    "trained (a rollback or another activation), and that choice stands; "
                    f"activate {version} by hand to use it"
                )
            else:
                reason = (
                    f"a person activated {now} while {version} was trained from it, and that choice stands; "
                    f"activate {version} by hand to use it"
                )
            note = f"{meta.note}, kept inactive: active version changed"
            self._write_meta(version, {"not_activated": reason, "note": note})
        return reason

    def attach_gate(self, version: str, gate: Dict[str, Any]) -> ModelVersion:
        """Record a verdict computed after `version` was published (the advisory k-fold one): every face reads
        it from meta.json (model list, GET /models, the Slicer version combo)."""
        self._check_exists(version)
        with exclusive(self.root / ACTIVE_LOCK):
            return self._write_meta(version, {"gate": gate})

    def meta(self, version: str) -> ModelVersion:
        self._check_exists(version)
        return ModelVersion.from_dict(json.loads((self.root / version / "meta.json").read_text()))

    def _write_meta(self, version: str, changes: Dict[str, Any]) -> ModelVersion:
        # Callers hold ACTIVE_LOCK: one read-modify-write of meta.json at a time.
        path = self.root / version / "meta.json"
        meta = {**json.loads(path.read_text()), **changes}
        atomic_write_text(path, json.dumps(meta, indent=2))
        return ModelVersion.from_dict(meta)

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
        reference_stats: Optional[ReferenceStats] = None,
        gate: Optional[Dict[str, Any]] = None,
        started_at_choice: Optional[int] = None,
    ) -> str:
        """Write a new version folder completely, then rename it into place and flip the pointer.

        `started_at_choice`: `active_choice()` when the training job read its parent; `activate_over_parent`
        then refuses to activate it over any choice a person made since.

        A bundle's configs travel with every version; reference statistics are the parent's unless given
        (they describe the source domain, not a round of adaptation). A version without a parent (an import)
        and without reference statistics keeps its batch-norm running statistics as its reference.
        """
        if reference_stats is None and parent is None:
            reference_stats = frozen_running_stats(network)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            torch.save(network.state_dict(), staging / "weights.pt")
            if config.bundle is not None:
                if config.bundle_root is None:
                    raise ValueError("a bundle model config needs bundle_root to publish its configs")
                shutil.copytree(Path(config.bundle_root) / "configs", staging / BUNDLE_FOLDER / "configs")
                for name in config.bundle_files:  # scripts/ and referenced files: loads need no original folder
                    source, target = Path(config.bundle_root) / name, staging / BUNDLE_FOLDER / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if source.is_dir():
                        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        shutil.copyfile(source, target)
                config = copy.copy(config)
                config.bundle = BUNDLE_FOLDER
            config.save(staging / "config.json")
            if feature_prior is not None:
                feature_prior.save(staging / "feature_prior.npz")
            if reference_stats is not None:
                reference_stats.save(staging / REFERENCE_STATS)
            elif parent is not None and (self.root / parent / REFERENCE_STATS).exists():
                shutil.copyfile(self.root / parent / REFERENCE_STATS, staging / REFERENCE_STATS)
            content_id, content_files = folder_content_id(staging, {})
            while True:
                version = self._next_version()
                meta = ModelVersion(
                    version,
                    parent,
                    datetime.now(timezone.utc).isoformat(),
                    metrics or {},
                    note,
                    bundle_code_trusted=config.bundle_code_trusted,
                    gate=gate or {},
                    content_id=content_id,
                    content_files=content_files,
                    started_at_choice=started_at_choice,
                )
                (staging / "meta.json").write_text(json.dumps(meta.__dict__, indent=2))
                _fsync_tree(staging)  # every file (meta.json too) and every directory entry, before the rename
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

    def content_id(self, version: str) -> str:
        """What the version folder holds now (not what it held at publish: a config may be edited in place).

        A version published before content ids existed gets its id recorded in meta.json on first use.
        """
        meta_path = self.root / version / "meta.json"
        if not _VERSION.match(version) or not meta_path.exists():
            raise ModelNotFound(f"model version {version!r} does not exist")
        meta = json.loads(meta_path.read_text())
        content_id, files = folder_content_id(meta_path.parent, meta.get("content_files") or {})
        if not meta.get("content_id"):
            recorded = {**meta, "content_id": content_id, "content_files": files}
            atomic_write_text(meta_path, json.dumps(recorded, indent=2))
        return content_id

    def load(self, version: Optional[str] = None, device: str = "cpu") -> LoadedModel:
        version = version or self.active_version()
        if version is None:
            raise ModelNotFound(f"no active model in {self.root}; import one with `asfda model import`")
        folder = self.root / version
        if not (folder / "meta.json").exists():
            raise ModelNotFound(f"model version {version!r} does not exist")
        # Identified before reading: files replaced during the load leave an id that matches none of them
        # afterwards, so nothing computed with this network is ever served for the new content.
        content_id = self.content_id(version)
        config = ModelConfig.load(folder / "config.json")
        network = build_network(config)
        load_weights(network, folder / "weights.pt")
        prior_path = folder / "feature_prior.npz"
        prior = FeaturePrior.load(prior_path) if prior_path.exists() else None
        reference_path = folder / REFERENCE_STATS
        reference = ReferenceStats.load(reference_path) if reference_path.exists() else None
        return LoadedModel(version, config, network.to(device).eval(), prior, reference, content_id)

    def cleanup_staging(self) -> None:
        """Remove half-written versions left by a killed writer."""
        for path in self.root.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)
