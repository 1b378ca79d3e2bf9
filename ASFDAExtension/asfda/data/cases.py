"""Cases of a datastore brought into the network's space (image and, where present, labels)."""

from __future__ import annotations

from typing import Optional

import torch
from monai.data import MetaTensor

from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import Geometry, check_same_geometry, load_volume
from asfda.models.config import ModelConfig
from asfda.models.preprocess import prepare_image, prepare_label


def prepared_image(store: Datastore, case_id: str, config: ModelConfig) -> MetaTensor:
    return prepare_image(load_volume(store.image_path(case_id)), config)


def prepared_label(
    store: Datastore, case_id: str, tag: LabelTag, config: ModelConfig, image: Optional[MetaTensor] = None
) -> Optional[torch.Tensor]:
    """The case's label in the network's space; `image` (the case's prepared image) replays a crop box that
    follows the image's content (asfda.models.preprocess.prepare_label)."""
    path = store.label_path(case_id, tag)
    if not path.exists():
        return None
    label = load_volume(path)
    check_same_geometry(store.geometry(case_id), Geometry.of(label))
    return prepare_label(label, config, image).round().to(torch.int64)
