"""Diversified Knowledge Divergence, knowledge-gap part: how far a volume is from what the model knows.

Our reconstruction (the paper's formulas are not public): a volume's gap is the mean over
normalisation layers and channels of KL( N(mu_x, var_x) || N(mu_src, var_src) ), where mu_x, var_x
are the channel statistics of the layer's input on that volume and mu_src, var_src the source's:
reference statistics recorded at import on source-like volumes, else the running statistics batch
norm stored during source training. Without either, a saved Gaussian feature prior, and without that
the distance from the target-pool feature mean. Which one was used travels with every score."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch import nn

from asfda.models.inference import ForwardResult, named_norm_layers_with_stats
from asfda.models.store import FeaturePrior, ReferenceStats

LayerStats = Dict[str, Tuple[np.ndarray, np.ndarray]]  # norm layer name -> (channel means, channel variances)


class KnowledgeSource(str, enum.Enum):
    REFERENCE_STATS = "reference_stats"  # norm-layer input statistics of source-like volumes, frozen at import
    NORM_STATS = "norm_stats"
    FEATURE_PRIOR = "feature_prior"
    POOL_MEAN = "pool_mean"  # fallback: no stored source knowledge; says so in the ranking


def gaussian_kl(mean_x, var_x, mean_s, var_s) -> np.ndarray:
    var_x, var_s = np.maximum(var_x, 1e-8), np.maximum(var_s, 1e-8)
    return 0.5 * (np.log(var_s / var_x) + (var_x + (mean_x - mean_s) ** 2) / var_s - 1.0)


def source_norm_stats(network: nn.Module) -> LayerStats:
    return {
        name: (m.running_mean.detach().double().cpu().numpy(), m.running_var.detach().double().cpu().numpy())
        for name, m in named_norm_layers_with_stats(network)
    }


def norm_stats_gap(result: ForwardResult, source: LayerStats) -> float:
    """Mean over the layers both sides know (matched by module name) of the mean channel KL."""
    per_layer = [
        float(gaussian_kl(mx, vx, *source[name]).mean())
        for name, mx, vx in zip(result.layer_names, result.layer_means, result.layer_vars)
        if name in source
    ]
    return float(np.mean(per_layer)) if per_layer else float("nan")


def feature_prior_gap(feature: np.ndarray, prior: FeaturePrior) -> float:
    # A point against a diagonal Gaussian: half the mean squared standardised distance.
    return float(0.5 * np.mean((feature - prior.mean) ** 2 / np.maximum(prior.var, 1e-8)))


def pool_mean_gaps(features: Sequence[np.ndarray]) -> np.ndarray:
    stacked = np.stack(features)
    mean, var = stacked.mean(axis=0), stacked.var(axis=0) + 1e-8
    return 0.5 * np.mean((stacked - mean) ** 2 / var, axis=1)


def available_sources(
    network: nn.Module, prior: Optional[FeaturePrior], reference: Optional[ReferenceStats] = None
) -> List[KnowledgeSource]:
    """The knowledge sources this model has, in order of preference.

    Reference statistics come first, also for batch-norm networks: they stay fixed while adaptation moves
    the batch-norm buffers. The pool mean is always available and knows nothing about the source.
    """
    found = []
    if reference is not None and reference.layer_names:
        found.append(KnowledgeSource.REFERENCE_STATS)
    if named_norm_layers_with_stats(network):
        found.append(KnowledgeSource.NORM_STATS)
    if prior is not None:
        found.append(KnowledgeSource.FEATURE_PRIOR)
    return found + [KnowledgeSource.POOL_MEAN]


def choose_knowledge_source(
    network: nn.Module,
    prior: Optional[FeaturePrior],
    preferred: Optional[KnowledgeSource] = None,
    reference: Optional[ReferenceStats] = None,
) -> KnowledgeSource:
    """`preferred` when the model has it (ablations, benchmarks), else the first available source."""
    available = available_sources(network, prior, reference)
    return KnowledgeSource(preferred) if preferred is not None and preferred in available else available[0]


@dataclass
class KnowledgeReference:
    """What a volume's knowledge gap is measured against, fixed once per model before scoring a pool."""

    source: KnowledgeSource
    layer_stats: LayerStats = field(default_factory=dict)
    prior: Optional[FeaturePrior] = None

    def gap(self, result: ForwardResult) -> float:
        if self.source in (KnowledgeSource.NORM_STATS, KnowledgeSource.REFERENCE_STATS):
            return norm_stats_gap(result, self.layer_stats)
        if self.source == KnowledgeSource.FEATURE_PRIOR:
            return feature_prior_gap(result.feature, self.prior)
        return float("nan")  # pool mean: needs the whole pool, see pool_mean_gaps


def knowledge_reference(
    network: nn.Module,
    prior: Optional[FeaturePrior],
    preferred: Optional[KnowledgeSource] = None,
    reference: Optional[ReferenceStats] = None,
) -> KnowledgeReference:
    source = choose_knowledge_source(network, prior, preferred, reference)
    stats: LayerStats = {}
    if source == KnowledgeSource.NORM_STATS:
        stats = source_norm_stats(network)
    elif source == KnowledgeSource.REFERENCE_STATS:
        stats = reference.as_dict()
    return KnowledgeReference(source, stats, prior)
