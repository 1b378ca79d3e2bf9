"""One adaptation round on a datastore: pick reliable pseudo-labels, fine-tune, publish a new version."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from asfda.adapt.finetune import TrainingItem, finetune
from asfda.adapt.options import AdaptOptions
from asfda.adapt.pseudo_labels import fill_unannotated, pseudo_label_items, remove_pseudo_label, save_pseudo_label
from asfda.adapt.validation_gate import gated_training
from asfda.data.cases import prepared_image, prepared_label
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_masks import prepared_mask
from asfda.loop.label_sets import TRAINED_LABELS, label_identities, labels_seen_by
from asfda.models.dice import class_dice
from asfda.models.inference import Predictor
from asfda.scoring.pool import CaseScorer

ProgressFn = Callable[[str, int, int, Optional[float]], None]
PSEUDO_LABEL_WRITERS = 4


@dataclass
class AdaptResult:
    version: str
    parent: str
    metrics: Dict[str, float]
    pseudo_cases: List[str]
    activated: bool = True
    gate: Dict = field(default_factory=dict)  # the validation gate's decision (GateDecision.to_dict())


def dice_per_class(network: torch.nn.Module, predictor_factory, items: List[TrainingItem], n_classes: int) -> float:
    """Mean foreground Dice of `network` on `items` (full volumes, sliding window; asfda.models.dice); a sparse
    label is compared on its annotated voxels only."""
    if not items:
        return float("nan")
    predictor = predictor_factory(network)
    per_class = []
    for item in items:
        predicted, reference = predictor.label_map(item.image), item.label[0]
        if item.mask is not None:
            annotated = item.mask[0].bool()
            predicted, reference = predicted[annotated], reference[annotated]
        per_class.append(class_dice(predicted, reference, n_classes))
    return float(np.mean(per_class))


def adapt_datastore(
    store: Datastore,
    options: AdaptOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    activate: bool = True,
) -> AdaptResult:
    """Fine-tune and publish a new version. Nothing on disk changes before training ends, so a cancelled or
    killed run leaves labels and models as they were; `activate=False` lets a supervisor flip ACTIVE itself."""
    teacher = store.models.load(device=device)
    config = teacher.config
    case_ids = store.case_ids()
    labeled_ids = store.labeled_ids()
    if not labeled_ids:
        raise ValueError(
            f"no clinician labels yet in {store.label_dir(LabelTag.FINAL)}: add one with `asfda label submit` "
            "(or the worker's PUT /cases/CASE/label) before adapting"
        )
    candidate_ids = [c for c in case_ids if c not in set(labeled_ids)]
    labeled = [
        TrainingItem(
            c,
            prepared_image(store, c, config),
            prepared_label(store, c, LabelTag.FINAL, config),
            prepared_mask(store, c, config),  # None: fully annotated
        )
        for c in labeled_ids
    ]
    scorer = CaseScorer(teacher, device, options.scoring)
    pseudo, extras = pseudo_label_items(store, scorer, candidate_ids, labeled_ids, options, progress)
    fills = []
    if options.fill_unannotated_with_pseudo_labels:
        fills = fill_unannotated(scorer, labeled, options.reliability.voxel_confidence)

    def make_predictor(network):
        return Predictor(network, config, device, options.scoring.precision)

    training_seconds = []  # every training of the round: the gate's fold models and the published one

    def train(items, report):
        student = copy.deepcopy(teacher.network)
        names = list(config.labels)
        # A gate fold's held-out volumes lend it nothing, not even the teacher's fill of their unannotated part.
        training_ids = {item.case_id for item in items}
        fill = [item for item in fills if item.case_id in training_ids]
        losses = finetune(
            student,
            config.roi_size,
            items,
            pseudo + fill,
            options.finetune,
            device,
            report,
            should_stop,
            label_names=names,
        )
        training_seconds.append(losses.get("seconds", 0.0))
        return student, losses

    trained_labels = label_identities(store, labeled_ids)  # read before training: what this round learns from
    seen = labels_seen_by(store, teacher.version)
    gated = gated_training(
        labeled,
        teacher.network,
        train,
        lambda network, items: dice_per_class(network, make_predictor, items, config.out_channels),
        options.gate,
        options.finetune.seed,
        progress,
        unseen=[c for c in labeled_ids if c not in seen],
    )
    student, losses, decision = gated.network, gated.losses, gated.decision

    # Pseudo-labels are written only after training finished, so a cancelled round changes no label.
    # Compressing volumes releases the GIL: a few threads write the round's pseudo-labels side by side.
    with ThreadPoolExecutor(max_workers=PSEUDO_LABEL_WRITERS) as writers:
        list(
            writers.map(
                lambda pair: save_pseudo_label(store, pair[0], config, teacher.version, pair[1]), zip(pseudo, extras)
            )
        )
    keep = {item.case_id for item in pseudo}
    for case_id in candidate_ids:  # pseudo-labels are derived data: drop those this round did not select
        if case_id not in keep and store.has_label(case_id, LabelTag.PSEUDO):
            remove_pseudo_label(store, case_id)

    metrics = {
        "train_dice_before": dice_per_class(teacher.network, make_predictor, labeled, config.out_channels),
        "train_dice_after": dice_per_class(student, make_predictor, labeled, config.out_channels),
        "labels": len(labeled),
        "pseudo_labels": len(pseudo),
        "sparse_labels": sum(item.mask is not None for item in labeled),
        "filled_sparse_labels": len(fills),
        **losses,
        "training_seconds_total": sum(training_seconds),
        "gate_method": decision.method,
        "gate_candidate_dice": decision.candidate_dice,
        "gate_parent_dice": decision.parent_dice,
        "gate_held_out": decision.held_out,
        TRAINED_LABELS: trained_labels,
    }
    version = store.models.publish(
        student,
        config,
        parent=teacher.version,
        metrics=metrics,
        feature_prior=teacher.feature_prior,
        note="asfda adapt" if decision.activate else f"asfda adapt, kept inactive: {decision.reason}",
        activate=activate and decision.activate,
    )
    return AdaptResult(
        version, teacher.version, metrics, sorted(keep), activate and decision.activate, decision.to_dict()
    )
