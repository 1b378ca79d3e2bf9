"""Diversified Knowledge Divergence, knowledge-gap part: how far a volume is from what the model knows.

Our reconstruction (the paper's formulas are not public): the model's source knowledge is the
running statistics its normalisation layers stored during source training; a volume's gap is the
mean over layers and channels of KL( N(mu_x, var_x) || N(mu_src, var_src) ), where mu_x, var_x are
the channel statistics of the layer's input on that volume. Networks without such statistics use a
saved Gaussian feature prior, and without that the distance from the target-pool feature mean.
"""

from __future__ import annotations

import enum
from typing import List, Optional, Sequence

import numpy as np
from torch import nn

from asfda.inference import ForwardResult, norm_layers_with_stats
from asfda.model_store import FeaturePrior


class KnowledgeSource(str, enum.Enum):
    NORM_STATS = "norm_stats"
    FEATURE_PRIOR = "feature_prior"
    POOL_MEAN = "pool_mean"  # fallback: no stored source knowledge; says so in the ranking


def gaussian_kl(mean_x, var_x, mean_s, var_s) -> np.ndarray:
    var_x, var_s = np.maximum(var_x, 1e-8), np.maximum(var_s, 1e-8)
    return 0.5 * (np.log(var_s / var_x) + (var_x + (mean_x - mean_s) ** 2) / var_s - 1.0)


def source_norm_stats(network: nn.Module):
    layers = norm_layers_with_stats(network)
    return [m.running_mean.detach().double().cpu().numpy() for m in layers], [
        m.running_var.detach().double().cpu().numpy() for m in layers
    ]


def norm_stats_gap(result: ForwardResult, source_means: List[np.ndarray], source_vars: List[np.ndarray]) -> float:
    per_layer = [
        float(gaussian_kl(mx, vx, ms, vs).mean())
        for mx, vx, ms, vs in zip(result.layer_means, result.layer_vars, source_means, source_vars)
    ]
    return float(np.mean(per_layer))


def feature_prior_gap(feature: np.ndarray, prior: FeaturePrior) -> float:
    # A point against a diagonal Gaussian: half the mean squared standardised distance.
    return float(0.5 * np.mean((feature - prior.mean) ** 2 / np.maximum(prior.var, 1e-8)))


def pool_mean_gaps(features: Sequence[np.ndarray]) -> np.ndarray:
    stacked = np.stack(features)
    mean, var = stacked.mean(axis=0), stacked.var(axis=0) + 1e-8
    return 0.5 * np.mean((stacked - mean) ** 2 / var, axis=1)


def choose_knowledge_source(
    network: nn.Module, prior: Optional[FeaturePrior], preferred: Optional[KnowledgeSource] = None
) -> KnowledgeSource:
    has_stats = bool(norm_layers_with_stats(network))
    if preferred == KnowledgeSource.FEATURE_PRIOR and prior is not None:
        return KnowledgeSource.FEATURE_PRIOR
    if preferred == KnowledgeSource.POOL_MEAN:
        return KnowledgeSource.POOL_MEAN
    if has_stats:
        return KnowledgeSource.NORM_STATS
    return KnowledgeSource.FEATURE_PRIOR if prior is not None else KnowledgeSource.POOL_MEAN
