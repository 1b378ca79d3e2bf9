"""Dice of a network on in-memory subjects, overall, per shift-severity band and per acquisition protocol."""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from asfda.demo.data import Subject
from asfda.demo.source_model import as_item
from asfda.models.config import ModelConfig
from asfda.models.dice import class_dice
from asfda.models.inference import Predictor

SEVERITY_BANDS = (("mild", 0.0, 1 / 3), ("moderate", 1 / 3, 2 / 3), ("severe", 2 / 3, 1.01))


def dice_per_subject(network: torch.nn.Module, config: ModelConfig, subjects: List[Subject]) -> Dict[str, float]:
    """Mean foreground Dice per subject (background excluded; a multi-class model averages its classes)."""
    return {
        case: float(np.mean(list(d.values()))) for case, d in class_dice_per_subject(network, config, subjects).items()
    }


def class_dice_per_subject(
    network: torch.nn.Module, config: ModelConfig, subjects: List[Subject]
) -> Dict[str, Dict[str, float]]:
    """Dice of every foreground label per subject (asfda.models.dice.class_dice on the model's label map)."""
    predictor = Predictor(network, config)
    names = [name for name, value in sorted(config.labels.items(), key=lambda kv: kv[1]) if value != 0]
    found = {}
    for subject in subjects:
        item = as_item(subject, config)
        values = class_dice(predictor.label_map(item.image), item.label[0], config.out_channels)
        found[subject.case_id] = {name: float(v) for name, v in zip(names, values)}
    return found


def by_severity(dice: Dict[str, float], severity: Dict[str, float]) -> Dict[str, float]:
    bands = {}
    for name, low, high in SEVERITY_BANDS:
        values = [d for case, d in dice.items() if low <= severity.get(case, 0.0) < high]
        if values:
            bands[name] = float(np.mean(values))
    return bands


def by_protocol(dice: Dict[str, float], protocol: Dict[str, str]) -> Dict[str, float]:
    """Mean Dice per protocol ("routine", "rare"); empty without protocols (the uniform mix)."""
    groups: Dict[str, List[float]] = {}
    for case, d in dice.items():
        if case in protocol:
            groups.setdefault(protocol[case], []).append(d)
    return {name: float(np.mean(values)) for name, values in sorted(groups.items(), key=lambda kv: kv[0] != "routine")}
