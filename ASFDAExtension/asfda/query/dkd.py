"""Diversified Knowledge Divergence, knowledge-gap part: how far a volume is from what the model knows.

Our reconstruction (the paper's formulas are not public): a volume's gap is the mean over
normalisation layers and channels of KL( N(mu_x, var_x) || N(mu_src, var_src) ), where mu_x, var_x
are the channel statistics of the layer's input on that volume and mu_src, var_src the source's:
reference statistics recorded at import on source-like volumes, else the running statistics batch
norm stored during source training. Without either, a saved Gaussian feature prior, and without that
the distance from the target-pool feature mean. Which one was used travels with every score.

Three guards keep a gap honest: each layer's own eps floors both variances (as the layer itself does when it
normalises), so a near-constant channel cannot make the log term explode; a layer's channels are summarised by
their interquartile mean, so one channel cannot dominate the layer; and layers are matched by name with
wrapper prefixes (`module.`, `_orig_mod.`) removed: below MIN_MATCHED of the network's layers matched, the
statistics are not used and the next knowledge source is, with a warning that says why."""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import trim_mean
from torch import nn

from asfda.models.inference import ForwardResult, named_norm_layers_with_stats, norm_layers
from asfda.models.store import FeaturePrior, ReferenceStats

LayerStats = Dict[str, Tuple[np.ndarray, np.ndarray]]  # norm layer name -> (channel means, channel variances)


class KnowledgeSource(str, enum.Enum):
    REFERENCE_STATS = "reference_stats"  # norm-layer input statistics of source-like volumes, frozen at import
    NORM_STATS = "norm_stats"
    FEATURE_PRIOR = "feature_prior"
    POOL_MEAN = "pool_mean"  # fallback: no stored source knowledge; says so in the ranking


MIN_MATCHED = 0.9  # the share of the network's normalisation layers the source statistics must name
DEFAULT_EPS = 1e-5  # torch's default for every normalisation layer
_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")  # DataParallel/DDP and torch.compile wrappers

log = logging.getLogger(__name__)


def layer_key(name: str) -> str:
    """A layer name without the prefixes that wrapping a network (DDP, torch.compile) adds."""
    return _WRAPPER_PREFIX.sub("", name)


def gaussian_kl(mean_x, var_x, mean_s, var_s, eps: float = DEFAULT_EPS) -> np.ndarray:
    var_x, var_s = np.asarray(var_x) + eps, np.asarray(var_s) + eps
    return 0.5 * (np.log(var_s / var_x) + (var_x + (mean_x - mean_s) ** 2) / var_s - 1.0)


def layer_gap(mean_x, var_x, mean_s, var_s, eps: float = DEFAULT_EPS) -> float:
    """A layer's gap: the interquartile mean of its channels' KL (one odd channel cannot carry the layer)."""
    return float(trim_mean(gaussian_kl(mean_x, var_x, mean_s, var_s, eps), 0.25))


def source_norm_stats(network: nn.Module) -> LayerStats:
    return {
        name: (m.running_mean.detach().double().cpu().numpy(), m.running_var.detach().double().cpu().numpy())
        for name, m in named_norm_layers_with_stats(network)
    }


def layer_eps(network: nn.Module) -> Dict[str, float]:
    return {layer_key(name): float(getattr(m, "eps", DEFAULT_EPS)) for name, m in norm_layers(network)}


def matched_fraction(network_layers: Sequence[str], source: LayerStats) -> float:
    """The share of the network's normalisation layers the source statistics describe (names unwrapped)."""
    if not network_layers:
        return 0.0
    known = {layer_key(name) for name in source}
    return sum(layer_key(name) in known for name in network_layers) / len(network_layers)


def norm_stats_gap(result: ForwardResult, source: LayerStats, eps: Optional[Dict[str, float]] = None) -> float:
    """Mean over the layers both sides know (matched by unwrapped module name) of the layer gaps."""
    eps = eps or {}
    known = {layer_key(name): stats for name, stats in source.items()}
    per_layer = [
        layer_gap(mx, vx, *known[layer_key(name)], eps.get(layer_key(name), DEFAULT_EPS))
        for name, mx, vx in zip(result.layer_names, result.layer_means, result.layer_vars)
        if layer_key(name) in known
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
    eps: Dict[str, float] = field(default_factory=dict)  # per unwrapped layer name
    matched: float = 1.0  # share of the network's normalisation layers the statistics describe
    warning: str = ""  # why a preferred source was not used, for the ranking's output

    def gap(self, result: ForwardResult) -> float:
        if self.source in (KnowledgeSource.NORM_STATS, KnowledgeSource.REFERENCE_STATS):
            return norm_stats_gap(result, self.layer_stats, self.eps)
        if self.source == KnowledgeSource.FEATURE_PRIOR:
            return feature_prior_gap(result.feature, self.prior)
        return float("nan")  # pool mean: needs the whole pool, see pool_mean_gaps


def knowledge_reference(
    network: nn.Module,
    prior: Optional[FeaturePrior],
    preferred: Optional[KnowledgeSource] = None,
    reference: Optional[ReferenceStats] = None,
) -> KnowledgeReference:
    """What DKD measures against for this network: the preferred (or best) source whose statistics name at
    least MIN_MATCHED of the network's normalisation layers; a source that does not is skipped with a
    warning (logged and kept on the reference), never scored as NaN under its name."""
    network_layers = [name for name, _ in norm_layers(network)]
    skipped: List[str] = []
    candidates = available_sources(network, prior, reference)
    first = choose_knowledge_source(network, prior, preferred, reference)
    for source in [first] + [c for c in candidates if c != first]:
        stats: LayerStats = {}
        frozen = reference is not None and reference.origin == "running_stats"
        if source == KnowledgeSource.NORM_STATS:
            stats = reference.as_dict() if frozen else source_norm_stats(network)
        elif source == KnowledgeSource.REFERENCE_STATS:
            stats = reference.as_dict()
            if frozen:
                source = KnowledgeSource.NORM_STATS  # the source's own batch-norm statistics, frozen at import
        if not stats:
            break
        matched = matched_fraction(network_layers, stats)
        if matched >= MIN_MATCHED:
            warning = "; ".join(skipped)
            if warning:
                log.warning("DKD: %s", warning)
            return KnowledgeReference(source, stats, prior, layer_eps(network), matched, warning)
        skipped.append(
            f"{source.value} names only {matched:.0%} of the network's {len(network_layers)} normalisation layers "
            f"(renamed or wrapped modules?), not used"
        )
    warning = "; ".join(skipped)
    if warning:
        log.warning("DKD: %s; measured against %s", warning, source.value)
        warning = f"{warning}; measured against {source.value}"
    return KnowledgeReference(source, {}, prior, layer_eps(network), 1.0, warning)
