"""Per-volume signals from one shared forward pass: DKD gap, ASD, entropy and embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from asfda.inference import Predictor
from asfda.model_store import FeaturePrior
from asfda.query.asd import ForegroundRule, anatomical_segmentation_difficulty, predicted_foreground, voxel_entropy
from asfda.query.balanced import class_entropies
from asfda.query.dkd import (
    KnowledgeSource,
    choose_knowledge_source,
    feature_prior_gap,
    norm_stats_gap,
    pool_mean_gaps,
    source_norm_stats,
)

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
    class_entropy: List[float] = field(default_factory=list)  # per class, for the class-balanced baseline


def compute_signals(
    predictor: Predictor,
    images: Dict[str, torch.Tensor],
    feature_prior: Optional[FeaturePrior] = None,
    knowledge_source: Optional[KnowledgeSource] = None,
    asd_rule: ForegroundRule = ForegroundRule.OTSU,
    progress: Optional[ProgressFn] = None,
) -> List[CaseSignals]:
    """Score every prepared image with a single forward pass each."""
    source = choose_knowledge_source(predictor.network, feature_prior, knowledge_source)
    src_means, src_vars = source_norm_stats(predictor.network)
    found: List[CaseSignals] = []
    for index, (case_id, image) in enumerate(images.items()):
        result = predictor.forward(image, collect=True)
        if source == KnowledgeSource.NORM_STATS:
            gap = norm_stats_gap(result, src_means, src_vars)
        elif source == KnowledgeSource.FEATURE_PRIOR:
            gap = feature_prior_gap(result.feature, feature_prior)
        else:
            gap = float("nan")  # needs the whole pool; filled below
        entropy = voxel_entropy(result.probs)
        found.append(
            CaseSignals(
                case_id=case_id,
                dkd=gap,
                asd=anatomical_segmentation_difficulty(result.probs, asd_rule, entropy),
                entropy=float(entropy.mean()),
                feature=result.feature,
                layer_means=result.layer_means,
                layer_vars=result.layer_vars,
                foreground_fraction=float(predicted_foreground(result.probs).float().mean()),
                knowledge_source=source.value,
                class_entropy=class_entropies(result.probs, entropy),
            )
        )
        if progress:
            progress(index + 1, len(images))
    if source == KnowledgeSource.POOL_MEAN and found:
        for signal, gap in zip(found, pool_mean_gaps([s.feature for s in found])):
            signal.dkd = float(gap)
    return found
