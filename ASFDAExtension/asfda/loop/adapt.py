"""One adaptation round on a datastore: pick reliable pseudo-labels, fine-tune, publish a new version."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from asfda.adapt.finetune import TrainingItem, finetune
from asfda.adapt.options import AdaptOptions
from asfda.adapt.pseudo_labels import fill_unannotated, pseudo_label_items, remove_pseudo_label, save_pseudo_label
from asfda.adapt.validation_gate import GateDecision, gated_training, kfold_verdict
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
    # Why a version the gate passed is inactive: the active version changed while it trained ("" otherwise).
    not_activated: str = ""


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


@dataclass
class RoundInputs:
    """What one round trains from, built once from the teacher (the active version, or a version's parent when
    its verdict is computed later): the clinician labels, the pool's reliable pseudo-labels and how to train."""

    labeled_ids: List[str]
    candidate_ids: List[str]
    labeled: List[TrainingItem]
    pseudo: List[TrainingItem]
    extras: list  # what save_pseudo_label writes beside each pseudo-label (its reliability mask)
    train: Callable  # (labels, progress) -> (trained copy of the teacher, losses)
    dice: Callable  # (network, labels) -> mean foreground Dice
    training_seconds: List[float] = field(default_factory=list)
    fills: List[TrainingItem] = field(default_factory=list)  # the teacher's fill of sparse labels' unannotated part


def round_inputs(
    store: Datastore,
    teacher,
    options: AdaptOptions,
    device: str,
    progress: Optional[ProgressFn],
    should_stop: Optional[Callable[[], bool]],
    labeled_ids: List[str],
) -> RoundInputs:
    config = teacher.config
    candidate_ids = [c for c in store.case_ids() if c not in set(labeled_ids)]
    images = {c: prepared_image(store, c, config) for c in labeled_ids}
    labeled = [
        TrainingItem(
            c,
            images[c],
            prepared_label(store, c, LabelTag.FINAL, config, images[c]),
            prepared_mask(store, c, config, images[c]),  # None: fully annotated
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

    training_seconds: List[float] = []  # every training of the round: the gate's fold models and the published one

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

    def dice(network, items):
        return dice_per_class(network, make_predictor, items, config.out_channels)

    return RoundInputs(labeled_ids, candidate_ids, labeled, pseudo, extras, train, dice, training_seconds, fills)


def adapt_datastore(
    store: Datastore,
    options: AdaptOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    activate: bool = True,
) -> AdaptResult:
    """Fine-tune and publish a new version. Nothing on disk changes before training ends, so a cancelled or
    killed run leaves labels and models as they were; `activate=False` lets a supervisor flip ACTIVE itself.
    An advisory gate verdict is left pending (`gate.pending`): `advisory_verdict` computes it afterwards."""
    # The parent and the count of people's choices, read together: a choice made while this round trains
    # stands (ModelStore.activate_over_parent), even one that names the parent again.
    parent, started_at_choice = store.models.active_choice()
    teacher = store.models.load(parent, device=device)
    config = teacher.config
    labeled_ids = store.labeled_ids()
    if not labeled_ids:
        raise ValueError(
            f"no clinician labels yet in {store.label_dir(LabelTag.FINAL)}: add one with `asfda label submit` "
            "(or the worker's PUT /cases/CASE/label) before adapting"
        )
    round_ = round_inputs(store, teacher, options, device, progress, should_stop, labeled_ids)
    labeled, pseudo, extras, candidate_ids = round_.labeled, round_.pseudo, round_.extras, round_.candidate_ids

    trained_labels = label_identities(store, labeled_ids)  # read before training: what this round learns from
    seen = labels_seen_by(store, teacher.version)
    gated = gated_training(
        labeled,
        teacher.network,
        round_.train,
        round_.dice,
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
        "train_dice_before": round_.dice(teacher.network, labeled),
        "train_dice_after": round_.dice(student, labeled),
        "labels": len(labeled),
        "pseudo_labels": len(pseudo),
        "sparse_labels": sum(item.mask is not None for item in labeled),
        "filled_sparse_labels": len(round_.fills),
        **losses,
        "training_seconds_total": sum(round_.training_seconds),
        "gate_method": decision.method,
        "gate_candidate_dice": decision.candidate_dice,
        "gate_parent_dice": decision.parent_dice,
        "gate_held_out": decision.held_out,
        TRAINED_LABELS: trained_labels,
    }
    # Published inactive, then activated by compare-and-swap against its parent: a rollback made while
    # this round trained stands (ModelStore.activate_over_parent).
    version = store.models.publish(
        student,
        config,
        parent=teacher.version,
        metrics=metrics,
        feature_prior=teacher.feature_prior,
        note="asfda adapt" if decision.activate else f"asfda adapt, kept inactive: {decision.reason}",
        activate=False,
        gate=decision.to_dict(),
        started_at_choice=started_at_choice,
    )
    not_activated = store.models.activate_over_parent(version) if activate and decision.activate else ""
    return AdaptResult(
        version,
        teacher.version,
        metrics,
        sorted(keep),
        activate and decision.activate and not not_activated,
        decision.to_dict(),
        not_activated,
    )


def advisory_verdict(
    store: Datastore,
    version: str,
    options: AdaptOptions,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Dict:
    """Compute the pending advisory k-fold verdict of `version` (published first, issue 18) and attach it to its
    metadata: the same recipe from its parent, over the labels it trained on, holding out the ones it recorded
    as new to the parent.

    Returns:
        the gate decision as recorded (GateDecision.to_dict()).
    """
    meta = store.models.meta(version)
    pending = meta.gate or {}
    if not pending.get("pending"):
        return pending  # computed already (or never pending): nothing to do
    teacher = store.models.load(meta.parent, device=device)
    trained = [c for c in (meta.metrics.get(TRAINED_LABELS) or {}) if store.has_label(c, LabelTag.FINAL)]
    round_ = round_inputs(store, teacher, options, device, progress, should_stop, sorted(trained))
    eligible = [c for c in pending.get("held_out", []) if c in set(trained)]
    if len(eligible) < 2:
        decision = GateDecision(True, "the labels this verdict needs were removed since: no verdict", "not gated")
    else:
        gate = replace(options.gate, verdict_after=False)
        decision = kfold_verdict(
            round_.labeled, teacher.network, round_.train, round_.dice, gate, options.finetune.seed, progress, eligible
        )
        decision.activate = True  # advisory: it never deactivates the version it judges
    recorded = {**decision.to_dict(), "computed_after_publish": True}
    store.models.attach_gate(version, recorded)
    return recorded
