"""The model's prediction of a case: what `asfda infer` writes and what `asfda evaluate` scores.

One definition: argmax in network space, on the device, then nearest-neighbour back to the image's own
grid (no C-channel probability map on the original grid; a linear inverse would turn a 1|3 boundary into 2).
A bundle whose Invertd asks for interpolation (config.invert_probabilities) gets its probabilities mapped
back with interpolation and the argmax on the image grid instead, as its own pipeline does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asfda.data.cases import prepared_image
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.predictions import prediction_identity
from asfda.models.inference import Predictor
from asfda.models.preprocess import labels_to_original_space, logits_to_labels, probabilities_to_labels
from asfda.models.store import LoadedModel

__all__ = ["predict_case", "predicted_labels"]


def predicted_labels(store: Datastore, case_id: str, model: LoadedModel, predictor: Predictor) -> np.ndarray:
    """The class ids the model predicts for `case_id`, on the case image's grid (nothing is written).

    Args:
        store: the datastore holding the case; model / predictor: the loaded version and its Predictor.
    Returns:
        an integer array with the image's shape.
    """
    image = prepared_image(store, case_id, model.config)
    if model.config.nnunet is not None:  # nnU-Net's export resamples the logits themselves
        return logits_to_labels(image, predictor.logit_map(image), model.config).numpy()
    if model.config.invert_probabilities:
        return probabilities_to_labels(image, predictor.probability_map(image), model.config).numpy()
    return labels_to_original_space(image, predictor.label_map(image), model.config).numpy()


def predict_case(store: Datastore, case_id: str, model: LoadedModel, predictor: Predictor) -> Path:
    """Predict `case_id` and store the label volume as labels/prediction/CASE.nii.gz.

    The record names the image fingerprint (taken before the image is read, so an image replaced meanwhile
    leaves a record that no longer matches) and the model's content id, so the prediction is served again
    only for the same image and the same model content.

    Returns:
        the path of the written prediction.
    """
    identity = prediction_identity(store.image_fingerprint(case_id), model.content_id)
    labels = predicted_labels(store, case_id, model, predictor)
    store.save_label(
        case_id,
        LabelTag.PREDICTION,
        labels,
        store.geometry(case_id).affine,
        model.config.label_values,
        model_version=model.version,
        require_foreground=False,
        extra={"precision": predictor.precision.value, **identity},
    )
    return store.label_path(case_id, LabelTag.PREDICTION)
