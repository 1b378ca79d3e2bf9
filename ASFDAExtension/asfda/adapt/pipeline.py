"""One adaptation round on a datastore: pick reliable pseudo-labels, fine-tune, publish a new version."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from asfda.adapt.finetune import FinetuneOptions, TrainingItem, finetune
from asfda.adapt.pseudo_labels import pseudo_label
from asfda.adapt.reliability import ReliabilityOptions, select_reliable
from asfda.adapt.validation_gate import GateOptions, gated_training
from asfda.cases import prepared_images, prepared_label
from asfda.datastore import Datastore, LabelTag
from asfda.inference import Predictor
from asfda.preprocess import to_original_space
from asfda.query.signals import compute_signals

ProgressFn = Callable[[str, int, int, Optional[float]], None]


@dataclass
class AdaptOptions:
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    reliability: ReliabilityOptions = field(default_factory=ReliabilityOptions)
    use_pseudo_labels: bool = True
    gate: GateOptions = field(default_factory=GateOptions)


@dataclass
class AdaptResult:
    version: str
    parent: str
    metrics: Dict[str, float]
    pseudo_cases: List[str]
    activated: bool = True
    gate: Dict = field(default_factory=dict)  # the validation gate's decision (GateDecision.to_dict())


def dice_per_class(network: torch.nn.Module, predictor_factory, items: List[TrainingItem], n_classes: int) -> float:
    """Mean foreground Dice of `network` on `items` (full volumes, sliding window)."""
    if not items:
        return float("nan")
    predictor = predictor_factory(network)
    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=False)
    for item in items:
        pred = predictor.forward(item.image, collect=False).probs.argmax(0, keepdim=True)
        metric(one_hot(pred[None], n_classes), one_hot(item.label[None], n_classes))
    return float(metric.aggregate())


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
    labeled_ids = [c for c in store.case_ids() if store.case_status(c) == "final"]
    if not labeled_ids:
        raise ValueError("no clinician labels yet: submit at least one label before adapting")
    candidate_ids = [c for c in store.case_ids() if c not in labeled_ids]
    images = prepared_images(store, labeled_ids + candidate_ids, config)
    labeled = [TrainingItem(c, images[c], prepared_label(store, c, LabelTag.FINAL, config)) for c in labeled_ids]
    pseudo: List[TrainingItem] = []
    extras: List[Dict] = []
    teacher_predictor = Predictor(teacher.network, config, device)
    if options.use_pseudo_labels and candidate_ids:
        signals = compute_signals(
            teacher_predictor,
            images,
            teacher.feature_prior,
            progress=lambda s, t: progress and progress("select", s, t, None),
        )
        by_id = {s.case_id: s for s in signals}
        reliable = select_reliable(
            [by_id[c] for c in candidate_ids], [by_id[c] for c in labeled_ids], options.reliability
        )
        for case in reliable:
            probs = teacher_predictor.forward(images[case.case_id], collect=False).probs
            label, mask = pseudo_label(probs, options.reliability.voxel_confidence)
            pseudo.append(TrainingItem(case.case_id, images[case.case_id], label[None].long(), mask[None]))
            extras.append(
                {
                    "reliability": case.reliability,
                    "asd": case.asd,
                    "masked_fraction": float(1.0 - mask.float().mean()),
                }
            )

    def make_predictor(network):
        return Predictor(network, config, device)

    def train(items, report):
        student = copy.deepcopy(teacher.network)
        names = list(config.labels)
        losses = finetune(
            student, config.roi_size, items, pseudo, options.finetune, device, report, should_stop, label_names=names
        )
        return student, losses

    gated = gated_training(
        labeled,
        teacher.network,
        train,
        lambda network, items: dice_per_class(network, make_predictor, items, config.out_channels),
        options.gate,
        options.finetune.seed,
        progress,
    )
    student, losses, decision = gated.network, gated.losses, gated.decision

    # Pseudo-labels are written only after training finished, so a cancelled round changes no label.
    for item, extra in zip(pseudo, extras):
        original = to_original_space(images[item.case_id], item.label.float(), config)
        store.save_label(
            item.case_id,
            LabelTag.PSEUDO,
            original[0].round().numpy().astype(np.uint8),
            store.geometry(item.case_id).affine,
            config.label_values,
            author="asfda",
            model_version=teacher.version,
            require_foreground=False,
            extra=extra,
        )
    keep = {item.case_id for item in pseudo}
    for case_id in candidate_ids:  # pseudo-labels are derived data: drop those this round did not select
        if case_id not in keep and store.has_label(case_id, LabelTag.PSEUDO):
            store.label_path(case_id, LabelTag.PSEUDO).unlink()
            store.state.remove_label(case_id, LabelTag.PSEUDO.value)

    metrics = {
        "train_dice_before": dice_per_class(teacher.network, make_predictor, labeled, config.out_channels),
        "train_dice_after": dice_per_class(student, make_predictor, labeled, config.out_channels),
        "labels": len(labeled),
        "pseudo_labels": len(pseudo),
        **losses,
        "gate_method": decision.method,
        "gate_candidate_dice": decision.candidate_dice,
        "gate_parent_dice": decision.parent_dice,
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
