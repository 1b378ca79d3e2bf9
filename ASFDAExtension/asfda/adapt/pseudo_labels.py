"""Teacher pseudo-labels with low-confidence voxels masked out of the loss, for the reliable cases only."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from asfda.adapt.finetune import TrainingItem
from asfda.adapt.options import AdaptOptions
from asfda.adapt.reliability import select_reliable
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import save_label_volume
from asfda.models.config import ModelConfig
from asfda.models.preprocess import labels_to_original_space
from asfda.scoring.pool import CaseScorer, score_pool
from asfda.scoring.stream import stream_cases

ProgressFn = Callable[[str, int, int, Optional[float]], None]


def pseudo_label_items(
    store: Datastore,
    scorer: CaseScorer,
    candidate_ids: List[str],
    labeled_ids: List[str],
    options: AdaptOptions,
    progress: Optional[ProgressFn] = None,
) -> Tuple[List[TrainingItem], List[Dict]]:
    """Reliable candidates with their masked teacher labels.

    The teacher's signals come from the signal cache (a rank with the same model version leaves them
    there), so only cases it never scored get a pass; the second pass, for the label maps, runs for the
    selected cases only, at most `reliability.max_volumes` of them.
    """
    if not options.use_pseudo_labels or not candidate_ids:
        return [], []
    pool = score_pool(
        store,
        scorer,
        candidate_ids + labeled_ids,
        progress=lambda _phase, step, total: progress and progress("select", step, total, None),
    )
    reliable = select_reliable(
        [pool.signals[c] for c in candidate_ids if c in pool.signals],
        [pool.signals[c] for c in labeled_ids if c in pool.signals],
        options.reliability,
    )
    by_id = {case.case_id: case for case in reliable}
    items, extras = [], []
    for streamed in stream_cases(store.root, list(by_id), scorer.model.config, scorer.options.workers):
        if streamed.error is not None:
            continue  # read fine while scoring, unreadable now (replaced meanwhile): simply not used
        store.remember_geometry(streamed.case_id, streamed.geometry)
        label, mask = scorer.predictor.confident_label_map(streamed.image, options.reliability.voxel_confidence)
        items.append(TrainingItem(streamed.case_id, streamed.image, label[None].long(), mask[None]))
        case = by_id[streamed.case_id]
        extras.append(
            {"reliability": case.reliability, "asd": case.asd, "masked_fraction": float(1.0 - mask.float().mean())}
        )
        if progress:
            progress("pseudo_labels", len(items), len(by_id), None)
    return items, extras


def fill_unannotated(scorer: CaseScorer, labeled: List[TrainingItem], voxel_confidence: float) -> List[TrainingItem]:
    """Pseudo-labels for the unannotated voxels of sparse clinician labels: the teacher's confident voxels there.

    Training-time only (never written to labels/pseudo/): the volume keeps its clinician label, whose annotated
    voxels these items leave out, so the clinician's word is never overruled by the teacher's.
    """
    items = []
    for item in labeled:
        if item.mask is None:
            continue
        label, confident = scorer.predictor.confident_label_map(item.image, voxel_confidence)
        fill = confident[None] & ~item.mask.bool()
        if fill.any():
            items.append(TrainingItem(item.case_id, item.image, label[None].long(), fill))
    return items


def mask_path(store: Datastore, case_id: str):
    """Where the voxels a pseudo-label trained on are recorded (1 = used, 0 = masked out as unsure)."""
    return store.root / "labels" / "pseudo-mask" / store.label_path(case_id, LabelTag.PSEUDO).name


def save_pseudo_label(store: Datastore, item: TrainingItem, config: ModelConfig, version: str, extra: Dict) -> None:
    """The file holds exactly the class ids the teacher predicted, mapped back with nearest neighbour; the
    mask of voxels it trained on goes beside it."""
    labels = labels_to_original_space(item.image, item.label[0], config).numpy()
    mask = labels_to_original_space(item.image, item.mask[0].to(torch.uint8), config).numpy()
    store.save_label(
        item.case_id,
        LabelTag.PSEUDO,
        labels,
        store.geometry(item.case_id).affine,
        config.label_values,
        author="asfda",
        model_version=version,
        require_foreground=False,
        extra=extra,
    )
    path = mask_path(store, item.case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_label_volume(path, mask.astype(np.uint8), store.geometry(item.case_id).affine)


def remove_pseudo_label(store: Datastore, case_id: str) -> None:
    store.label_path(case_id, LabelTag.PSEUDO).unlink(missing_ok=True)
    mask_path(store, case_id).unlink(missing_ok=True)
    store.state.remove_label(case_id, LabelTag.PSEUDO.value)
