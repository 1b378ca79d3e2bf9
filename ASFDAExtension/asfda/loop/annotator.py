"""One round of the loop with a simulated annotator, shared by the demo and the benchmark.

Rank with the product's own code, reveal the true label of each pick as a clinician label, adapt: the
same calls a clinician's Rank, Submit and Adapt make, so what the demo and the benchmark measure is
what a user gets. A sparse rank's picks are annotated as a clinician in the Slicer module annotates them:
only the requested slices are drawn (whole slices, background included) and the label goes in with its mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from asfda.core.annotation_cost import NO_COST, AnnotationCost, slices_cost, thickest_axis, volume_cost
from asfda.data.label_submit import LabelSubmission, submit_label_array
from asfda.loop.adapt import AdaptResult
from asfda.loop.rank import RankOutcome
from asfda.loop.requests import AdaptRequest, RankRequest
from asfda.loop.session import LoopSession
from asfda.query.slices import RequestedSlices

__all__ = ["RoundResult", "simulated_round", "sparse_annotation"]


@dataclass
class RoundResult:
    picks: List[str]
    ranking: RankOutcome
    adaptation: AdaptResult
    # The annotator's estimated effort this round (asfda.core.annotation_cost's per-slice model, drawing over
    # the model's draft): every slice of a whole volume, the requested slices of a sparse pick.
    cost: AnnotationCost = NO_COST
    cost_by_case: Dict[str, AnnotationCost] = field(default_factory=dict)


def sparse_annotation(truth: np.ndarray, requested: RequestedSlices) -> Tuple[np.ndarray, np.ndarray]:
    """What a clinician submits for a sparse pick: the true label on the requested slices (background
    elsewhere) and the mask marking those whole slices as annotated."""
    mask = np.zeros(truth.shape, dtype=np.uint8)
    index = [slice(None)] * truth.ndim
    index[requested.axis] = list(requested.indices)
    mask[tuple(index)] = 1
    return np.where(mask > 0, truth, 0), mask


def simulated_round(
    session: LoopSession,
    rank: RankRequest,
    adapt: AdaptRequest,
    truth: Dict[str, np.ndarray],
    affine_of: Callable[[str], np.ndarray],
    author: str = "simulated-annotator",
    mode: str = "correct",
) -> RoundResult:
    """Rank, label the picks with their true labels (only the requested slices of a sparse rank), adapt.

    Args:
        session: the loop on the experiment's datastore; rank / adapt: the round's requests.
        truth: the true label map of every pool case; affine_of: each case's affine (its image's).
        author: recorded as the labels' author; mode: the cost model's "correct" (over a draft) or "scratch".
    Returns:
        the picks, the ranking, the adaptation's result and the estimated annotation cost.
    """
    ranking = session.rank(rank)
    picks = [r.case_id for r in ranking.ranked if r.selected]
    config = session.active_config()
    version = session.store.models.active_version()
    costs: Dict[str, AnnotationCost] = {}
    for case_id in picks:
        requested: Optional[RequestedSlices] = ranking.requested_slices.get(case_id)
        affine = affine_of(case_id)
        # The same submit a clinician's makes (revision, lease check, audit, mask checks), from memory.
        submission = LabelSubmission(case_id, None, author, "simulated")
        if requested is None:
            axis = thickest_axis(session.store.geometry(case_id).spacing)  # the axis a sparse rank would use
            submit_label_array(session.store, submission, truth[case_id], affine, config, version)
            costs[case_id] = volume_cost(truth[case_id], axis, mode)
        else:
            label, mask = sparse_annotation(truth[case_id], requested)
            submit_label_array(session.store, submission, label, affine, config, version, mask=mask)
            costs[case_id] = slices_cost(truth[case_id], requested.axis, requested.indices, mode)
    total = sum(costs.values(), NO_COST)
    return RoundResult(picks, ranking, session.adapt(adapt), total, costs)
