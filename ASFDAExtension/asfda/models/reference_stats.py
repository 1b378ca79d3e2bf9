"""Reference statistics: what the normalisation layers of a model see on a few source-like volumes.

Stored once at import (`asfda model import ... --reference DIR`) and inherited by every adapted version,
so DKD keeps a fixed source reference for networks without batch-norm running statistics (layer,
instance and group norm) and for batch-norm networks whose buffers drift during fine-tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np
import torch

from asfda.core.errors import ConfigError
from asfda.io.volumes import load_volume, strip_volume_suffix, volume_suffix
from asfda.models.config import ModelConfig
from asfda.models.inference import Predictor
from asfda.models.preprocess import prepare_image
from asfda.models.store import ReferenceStats


def reference_volumes(folder: Path) -> List[Path]:
    """Volumes in a folder, as a datastore's images/ holds them (NIfTI, NRRD files, DICOM series folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--reference {folder}: not a folder")
    found = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and (p.is_dir() or volume_suffix(p))]
    if not found:
        raise ConfigError(f"--reference {folder}: no volumes (NIfTI, NRRD or DICOM folders) in it")
    return found


def pooled_reference(names: List[str], per_volume: List[Dict[str, tuple]]) -> ReferenceStats:
    """Average the per-volume channel means and variances, as batch norm's cumulative running statistics
    would over batches of one volume: the variance is the typical within-volume variance."""
    layers = [name for name in per_volume[0] if all(name in stats for stats in per_volume)]
    means = [np.mean([stats[name][0] for stats in per_volume], axis=0) for name in layers]
    variances = [np.mean([stats[name][1] for stats in per_volume], axis=0) for name in layers]
    return ReferenceStats(layers, means, variances, names)


def reference_stats_of(predictor: Predictor, images: Iterable[Tuple[str, torch.Tensor]]) -> ReferenceStats:
    """Reference statistics of (name, prepared image) pairs, one forward pass each; images may stream."""
    names, per_volume = [], []
    for name, image in images:
        names.append(name)
        result = predictor.forward(image, collect=True)
        if not result.layer_names:
            raise ConfigError(f"--reference: {predictor.config.network} has no normalisation layers, nothing to record")
        per_volume.append(
            {
                name: (np.asarray(m, np.float64), np.asarray(v, np.float64))
                for name, m, v in zip(result.layer_names, result.layer_means, result.layer_vars)
            }
        )
    return pooled_reference(names, per_volume)


def compute_reference_stats(
    network: torch.nn.Module, config: ModelConfig, folder: Path, device: str = "cpu"
) -> ReferenceStats:
    """Reference statistics of the volumes in `folder`, prepared as the model prepares a case."""
    paths = reference_volumes(folder)  # checked before the first, possibly long, pass
    images = ((strip_volume_suffix(p), prepare_image(load_volume(p), config)) for p in paths)
    return reference_stats_of(Predictor(network, config, device), images)
