"""Feature spaces in which selection measures coverage and distance."""

from __future__ import annotations

import enum
from typing import List

import numpy as np
from sklearn.decomposition import PCA

from asfda.query.signals import CaseSignals


class EmbeddingKind(str, enum.Enum):
    MULTILAYER = "multilayer"  # channel means of every normalised layer (all depths)
    NORM_STATS = "norm_stats"  # channel means and log-variances of every normalised layer
    BOTTLENECK = "bottleneck"  # pooled deepest-encoder feature only


def raw_vector(signal: CaseSignals, kind: EmbeddingKind) -> np.ndarray:
    if kind == EmbeddingKind.BOTTLENECK or not signal.layer_means:
        return np.asarray(signal.feature, dtype=np.float64)
    means = np.concatenate(signal.layer_means)
    if kind == EmbeddingKind.MULTILAYER:
        return means
    return np.concatenate([means, np.log(np.concatenate(signal.layer_vars))])


def embed(signals: List[CaseSignals], kind: EmbeddingKind, max_dims: int = 16) -> np.ndarray:
    """Standardise each dimension across the given volumes, then reduce with PCA.

    Standardising stops a few high-variance channels from deciding every distance.
    """
    stacked = np.stack([raw_vector(s, kind) for s in signals])
    std = stacked.std(axis=0)
    keep = std > 1e-8
    if not keep.any():
        return np.zeros((len(signals), 1))
    z = (stacked[:, keep] - stacked[:, keep].mean(axis=0)) / std[keep]
    dims = min(max_dims, z.shape[0] - 1, z.shape[1])
    if dims < 1:
        return z
    return PCA(n_components=dims, random_state=0).fit_transform(z)
