"""What runs inside one Ray actor: the model loaded once, then one case scored per call.

Plain Python (the coordinator wraps it with `ray.remote`), so it imports without Ray and its reading and
scoring are the single-process path's own: `CaseScorer.score` on `prepare_image(load_volume(path))`.
An actor never opens the datastore (its SQLite and folders have one writer: the coordinator); it only
reads an image path or unpacks shipped bytes into its own temporary folder.

The actor runs its calls in threads (max_concurrency = cases in flight): the next case is read and
resampled while the current one is on the device, as the DataLoader workers do on the single-process
path; a lock keeps one network pass at a time, so device memory holds one volume's activations.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from asfda.query.signals import CaseSignals
from asfda.scoring.options import SIGNAL_FORMAT, ScoringOptions


@dataclass
class ShippedFiles:
    """A file or a folder (a DICOM series) as bytes: an image or a model version sent through the object store."""

    name: str  # the file or folder name; its suffix tells the reader the format
    files: Dict[str, bytes]  # relative path -> content; {"": content} for a single file

    @classmethod
    def read(cls, path: Path) -> ShippedFiles:
        path = Path(path)
        if path.is_dir():
            files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
            return cls(path.name, files)
        return cls(path.name, {"": path.read_bytes()})

    def write_into(self, folder: Path) -> Path:
        target = Path(folder) / self.name
        for relative, content in self.files.items():
            out = target / relative if relative else target
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
        return target

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.files.values())


ImageInput = Union[str, ShippedFiles]  # a path every node can read, or the image's bytes


@dataclass
class ScoredCase:
    case_id: str
    signal: Optional[CaseSignals]
    error: Optional[str] = None  # one line, as the single-process stream reports a case it cannot read
    seconds: float = 0.0  # read + prepare + score inside the actor


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


class CaseScoringActor:
    def __init__(
        self,
        models: Union[str, ShippedFiles],
        version: str,
        options: ScoringOptions,
        device: str,
        threads: int,
    ):
        import torch

        from asfda.models.store import ModelStore
        from asfda.scoring.pool import CaseScorer

        torch.set_num_threads(max(1, int(threads)))
        self._scratch = Path(tempfile.mkdtemp(prefix="asfda-ray-"))
        if isinstance(models, ShippedFiles):
            models_root = self._scratch / "models"
            models.write_into(models_root)  # the version folder, under its own name
        else:
            models_root = Path(models)
            if not (models_root / version / "meta.json").exists():
                raise FileNotFoundError(
                    f"model version {version} is not readable at {models_root} on this node: put the datastore "
                    "on storage every node mounts (ASFDA_RAY_ROOT if the path differs) or use "
                    "ASFDA_RAY_DATA=object-store"
                )
        self.device = device
        self._device_lock = threading.Lock()
        self.scorer = CaseScorer(ModelStore(models_root).load(version, device), device, options)

    def describe(self) -> dict:
        import ray

        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "device": self.device,
            "signal_format": SIGNAL_FORMAT,
        }

    def score(self, case_id: str, image: ImageInput) -> ScoredCase:
        from asfda.io.volumes import load_volume
        from asfda.models.preprocess import prepare_image

        started = time.perf_counter()
        unpacked = None
        try:
            if isinstance(image, ShippedFiles):
                unpacked = Path(tempfile.mkdtemp(dir=self._scratch))
                path = image.write_into(unpacked)
            else:
                path = Path(image)
            prepared = prepare_image(load_volume(path), self.scorer.model.config)
        except Exception as exc:  # a case that cannot be read is left out with its reason, as in the stream
            return ScoredCase(case_id, None, _one_line(exc), time.perf_counter() - started)
        finally:
            if unpacked is not None:
                shutil.rmtree(unpacked, ignore_errors=True)
        # A failing network pass is not the case's fault: it fails the rank, as on the single-process path.
        with self._device_lock:
            signal = self.scorer.score(case_id, prepared)
        return ScoredCase(case_id, signal, None, time.perf_counter() - started)

    def __del__(self):
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
