"""Train the demo's source model on source-domain subjects (about half a minute on two CPU cores)."""

from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np
import torch

import asfda.adapt as adapt  # `adapt.finetune` (the function): its name is also a submodule's
from asfda.adapt import FinetuneOptions, TrainingItem
from asfda.demo.data import Subject
from asfda.models.config import ModelConfig
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.models.store import FeaturePrior


def demo_model_config(labels, shape) -> ModelConfig:
    return ModelConfig(
        network="UNet",
        network_args={"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1, "norm": "batch"},
        labels=dict(labels),
        label_colors={"brain": [0.9, 0.6, 0.3], "grey_matter": [0.4, 0.7, 0.9], "white_matter": [0.95, 0.95, 0.7]},
        roi_size=list(shape),
    ).validate()


def as_item(subject: Subject, config: ModelConfig) -> TrainingItem:
    from asfda.models.preprocess import intensity_transform

    image = intensity_transform(config)(torch.as_tensor(subject.image[None], dtype=torch.float32))
    return TrainingItem(subject.case_id, torch.as_tensor(image), torch.as_tensor(subject.label[None].astype(np.int64)))


def train_source_model(
    subjects: List[Subject],
    config: ModelConfig,
    steps: int,
    seed: int,
    progress: Optional[Callable] = None,
):
    torch.manual_seed(seed)
    network = build_network(config)
    items = [as_item(s, config) for s in subjects]
    # Source training is plain supervised training: the adaptation-time EMA guard is not part of it.
    options = FinetuneOptions(steps=steps, learning_rate=2e-3, batch_size=2, seed=seed, ema_decay=0.0)
    adapt.finetune(network, config.roi_size, items, [], options, progress=progress)
    # The feature prior lets DKD work for networks without norm statistics too.
    predictor = Predictor(network, config)
    features = np.stack([predictor.forward(item.image).feature for item in items])
    return network, FeaturePrior(mean=features.mean(0), var=features.var(0) + 1e-6)
