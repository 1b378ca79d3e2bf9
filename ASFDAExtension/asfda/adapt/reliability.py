"""Which unqueried volumes are reliable enough to learn from their own pseudo-labels.

Reliable = the model is confident about the anatomy (low ASD) AND the volume is close to what the
clinician labelled (in the frozen model's feature space), so the pseudo-label is likely right and
the label set's neighbourhood is where it adds weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from asfda.query.embedding import EmbeddingKind, embed
from asfda.query.signals import CaseSignals


@dataclass
class ReliabilityOptions:
    asd_quantile: float = 0.5  # keep candidates whose ASD is at most this quantile of the candidates'
    distance_quantile: float = 0.75  # ... and whose distance to the nearest label is at most this quantile
    voxel_confidence: float = 0.9  # voxels whose top probability is below this are left out of the loss
    # Cap on pseudo-labelled volumes per round: their second pass and their memory stay bounded in big pools.
    max_volumes: Optional[int] = 16
    embedding: EmbeddingKind = EmbeddingKind.MULTILAYER


@dataclass
class ReliableCase:
    case_id: str
    reliability: float  # higher is more reliable, in [0, 1]
    asd: float
    distance: float


def reliability_scores(candidates: List[CaseSignals], labeled: List[CaseSignals], options: ReliabilityOptions):
    """(reliability in [0,1], distance to nearest labelled) for every candidate."""
    asd = np.array([c.asd for c in candidates])
    if labeled:
        space = embed(candidates + labeled, options.embedding)
        pool, anchors = space[: len(candidates)], space[len(candidates) :]
        distance = np.sqrt(((pool[:, None] - anchors[None]) ** 2).sum(-1)).min(axis=1)
    else:
        distance = np.zeros(len(candidates))
    closeness = 1.0 - distance / max(float(distance.max()), 1e-12)
    confidence = 1.0 - asd
    return 0.5 * (confidence + closeness), distance


def select_reliable(
    candidates: List[CaseSignals], labeled: List[CaseSignals], options: ReliabilityOptions
) -> List[ReliableCase]:
    if not candidates:
        return []
    reliability, distance = reliability_scores(candidates, labeled, options)
    asd = np.array([c.asd for c in candidates])
    keep = (asd <= np.quantile(asd, options.asd_quantile)) & (
        distance <= np.quantile(distance, options.distance_quantile)
    )
    chosen = [
        ReliableCase(c.case_id, float(r), float(a), float(d))
        for c, r, a, d, k in zip(candidates, reliability, asd, distance, keep)
        if k
    ]
    chosen.sort(key=lambda c: -c.reliability)
    return chosen[: options.max_volumes] if options.max_volumes else chosen
