"""Predict a case with the active model and store the label volume on the image's own grid."""

from __future__ import annotations

from pathlib import Path

from asfda.data.cases import prepared_image
from asfda.data.datastore import Datastore, LabelTag
from asfda.models.inference import Predictor
from asfda.models.preprocess import labels_to_original_space
from asfda.models.store import LoadedModel


def predict_case(store: Datastore, case_id: str, model: LoadedModel, predictor: Predictor) -> Path:
    image = prepared_image(store, case_id, model.config)
    # Argmax in network space, on the device, then nearest-neighbour back: no C-channel map on the original grid.
    labels = labels_to_original_space(image, predictor.label_map(image), model.config).numpy()
    geometry = store.geometry(case_id)
    store.save_label(
        case_id,
        LabelTag.PREDICTION,
        labels,
        geometry.affine,
        model.config.label_values,
        model_version=model.version,
        require_foreground=False,
    )
    return store.label_path(case_id, LabelTag.PREDICTION)
