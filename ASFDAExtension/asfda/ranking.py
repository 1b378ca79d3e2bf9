"""Rank a datastore's unlabelled cases with the active model and store the worklist."""

from __future__ import annotations

import uuid
from typing import Callable, List, Optional

from asfda.cases import prepared_images
from asfda.datastore import Datastore
from asfda.inference import Predictor
from asfda.query.asd import mc_dropout_epistemic
from asfda.query.signals import compute_signals
from asfda.query.strategies import RankedCase, RankingOptions, Strategy, rank
from asfda.state import ScoreRecord, utc_now

# MONAI Label's epistemic scoring default number of dropout samples.
MC_DROPOUT_SAMPLES = 5

ProgressFn = Callable[[str, int, int], None]


def rank_datastore(
    store: Datastore,
    options: RankingOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
) -> List[RankedCase]:
    model = store.models.load(device=device)
    predictor = Predictor(model.network, model.config, device)
    labeled_ids = [c for c in store.case_ids() if store.case_status(c) == "final"]
    pool_ids = [c for c in store.case_ids() if c not in labeled_ids]
    images = prepared_images(store, pool_ids + labeled_ids, model.config)

    def report(step: int, total: int) -> None:
        if progress:
            progress("score", step, total)

    signals = compute_signals(
        predictor, images, model.feature_prior, progress=report, reference_stats=model.reference_stats
    )
    if Strategy(options.strategy) == Strategy.MC_DROPOUT:
        for index, signal in enumerate(signals):
            signal.epistemic = mc_dropout_epistemic(
                predictor.mc_dropout_probs(images[signal.case_id], MC_DROPOUT_SAMPLES)
            )
            if progress:
                progress("mc_dropout", index + 1, len(signals))
    pool = [s for s in signals if s.case_id in pool_ids]
    labeled = [s for s in signals if s.case_id in labeled_ids]
    ranked = rank(pool, labeled, options)
    run_id, now = uuid.uuid4().hex[:12], utc_now()
    knowledge_source = signals[0].knowledge_source if signals else None
    store.state.replace_scores(
        Strategy(options.strategy).value,
        [
            ScoreRecord(
                r.case_id,
                Strategy(options.strategy).value,
                model.version,
                r.dkd,
                r.asd,
                r.score,
                r.rank,
                r.selected,
                now,
                run_id,
                knowledge_source,
            )
            for r in ranked
        ],
    )
    return ranked
