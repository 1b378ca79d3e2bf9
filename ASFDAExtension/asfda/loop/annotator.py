"""One round of the loop with a simulated annotator, shared by the demo and the benchmark.

Rank with the product's own code, reveal the true label of each pick as a clinician label, adapt: the
same calls a clinician's Rank, Submit and Adapt make, so what the demo and the benchmark measure is
what a user gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np

from asfda.data.label_submit import LabelSubmission, submit_label_array
from asfda.loop.adapt import AdaptResult
from asfda.loop.rank import RankOutcome
from asfda.loop.requests import AdaptRequest, RankRequest
from asfda.loop.session import LoopSession

__all__ = ["RoundResult", "simulated_round"]


@dataclass
class RoundResult:
    picks: List[str]
    ranking: RankOutcome
    adaptation: AdaptResult


def simulated_round(
    session: LoopSession,
    rank: RankRequest,
    adapt: AdaptRequest,
    truth: Dict[str, np.ndarray],
    affine_of: Callable[[str], np.ndarray],
    author: str = "simulated-annotator",
) -> RoundResult:
    """Rank, label the picks with their true labels, adapt.

    Args:
        session: the loop on the experiment's datastore; rank / adapt: the round's requests.
        truth: the true label map of every pool case; affine_of: each case's affine (its image's).
        author: recorded as the labels' author.
    Returns:
        the picks, the ranking and the adaptation's result.
    """
    ranking = session.rank(rank)
    picks = [r.case_id for r in ranking.ranked if r.selected]
    config = session.active_config()
    version = session.store.models.active_version()
    for case_id in picks:
        # The same submit a clinician's makes (revision, lease check, audit), from memory.
        submission = LabelSubmission(case_id, None, author, "simulated")
        submit_label_array(session.store, submission, truth[case_id], affine_of(case_id), config, version)
    return RoundResult(picks, ranking, session.adapt(adapt))
