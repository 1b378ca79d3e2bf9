"""Per-volume signals from one shared forward pass: DKD gap, ASD, entropy and embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from asfda.models.inference import Predictor
from asfda.models.store import FeaturePrior, ReferenceStats
from asfda.models.voxel_maps import predicted_class, voxel_entropy
from asfda.query.asd import ForegroundRule, foreground_region, region_mean
from asfda.query.balanced import class_entropies
from asfda.query.dkd import KnowledgeReference, KnowledgeSource, knowledge_reference, pool_mean_gaps

ProgressFn = Callable[[int, int], None]


@dataclass
class CaseSignals:
    case_id: str
    dkd: float
    asd: float
    entropy: float
    feature: np.ndarray  # pooled deepest-encoder feature
    layer_means: List[np.ndarray] = field(default_factory=list)
    layer_vars: List[np.ndarray] = field(default_factory=list)
    foreground_fraction: float = 0.0
    knowledge_source: str = KnowledgeSource.NORM_STATS.value
    epistemic: Optional[float] = None
    layer_names: List[str] = field(default_factory=list)
    foreground_voxels: int = 0
    class_entropy: List[float] = field(default_factory=list)  # per class, for the class-balanced baseline
    knowledge_matched: float = 1.0  # share of the network's normalisation layers DKD's statistics describe
    class_voxels: List[int] = field(default_factory=list)  # predicted voxels per class (argmax), background first


def score_volume(
    predictor: Predictor,
    case_id: str,
    image: torch.Tensor,
    reference: KnowledgeReference,
    asd_rule: ForegroundRule = ForegroundRule.OTSU,
) -> CaseSignals:
    """One pass on the predictor's device; only the pooled statistics and four scalars come back.

    A pool-mean gap is left as NaN: it needs every volume's feature (see fill_pool_mean_gaps).
    """
    result = predictor.device_pass(image, collect=True)
    probs = result.probs
    entropy = voxel_entropy(probs)
    predicted = predicted_class(probs)  # once, for the foreground and the per-class entropies
    foreground = predicted > 0
    asd = region_mean(entropy, foreground_region(probs, asd_rule, foreground), empty=1.0)
    per_class = class_entropies(probs, entropy, predicted)
    classes = probs.shape[0]
    counts = torch.bincount(predicted.flatten(), minlength=classes).float()
    scalars = torch.cat(
        [torch.stack([asd, entropy.mean(), foreground.float().mean(), foreground.sum().float()]), per_class, counts]
    ).tolist()  # the one transfer of the volume's scalars
    del probs, entropy, predicted, foreground, result.probs
    return CaseSignals(
        case_id=case_id,
        dkd=reference.gap(result),
        asd=float(scalars[0]),
        entropy=float(scalars[1]),
        feature=result.feature,
        layer_means=result.layer_means,
        layer_vars=result.layer_vars,
        foreground_fraction=float(scalars[2]),
        knowledge_source=reference.source.value,
        layer_names=result.layer_names,
        foreground_voxels=int(scalars[3]),
        class_entropy=[float(v) for v in scalars[4 : 4 + classes]],
        knowledge_matched=reference.matched,
        class_voxels=[int(v) for v in scalars[4 + classes :]],
    )


def fill_pool_mean_gaps(signals: List[CaseSignals]) -> None:
    """Pool-mean DKD: each volume's distance from the pool's feature distribution, set in place."""
    chosen = [s for s in signals if s.knowledge_source == KnowledgeSource.POOL_MEAN.value]
    if chosen:
        for signal, gap in zip(chosen, pool_mean_gaps([s.feature for s in chosen])):
            signal.dkd = float(gap)


def compute_signals(
    predictor: Predictor,
    images: Dict[str, torch.Tensor],
    feature_prior: Optional[FeaturePrior] = None,
    knowledge_source: Optional[KnowledgeSource] = None,
    asd_rule: ForegroundRule = ForegroundRule.OTSU,
    progress: Optional[ProgressFn] = None,
    reference_stats: Optional[ReferenceStats] = None,
) -> List[CaseSignals]:
    """Score every prepared image held in memory with a single forward pass each (small pools, benchmarks);
    datastores stream their cases through asfda.scoring instead."""
    reference = knowledge_reference(predictor.network, feature_prior, knowledge_source, reference_stats)
    found: List[CaseSignals] = []
    for index, (case_id, image) in enumerate(images.items()):
        found.append(score_volume(predictor, case_id, image, reference, asd_rule))
        if progress:
            progress(index + 1, len(images))
    fill_pool_mean_gaps(found)
    return found
