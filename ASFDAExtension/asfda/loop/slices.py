"""The slices a sparse rank requests in its picks: one model pass per picked volume, then the slice rule."""

from __future__ import annotations

from typing import Dict, List

from asfda.data.cases import prepared_image
from asfda.data.datastore import Datastore
from asfda.models.inference import Predictor
from asfda.models.preprocess import labels_to_original_space, to_original_space
from asfda.models.voxel_maps import predicted_class, voxel_entropy
from asfda.query.slices import REGISTRY, RequestedSlices, SliceOptions, choose_slices

__all__ = ["requested_slices"]


def requested_slices(
    store: Datastore, predictor: Predictor, case_ids: List[str], options: SliceOptions
) -> Dict[str, RequestedSlices]:
    """Per picked case, the slices to annotate, chosen on the image's own grid (where the clinician draws).

    The prediction is "the model's prediction" (argmax in network space, nearest neighbour back); the entropy,
    for rules that need it, goes back with the image's own interpolation.
    """
    if options.per_volume < 1:
        return {}
    needs_entropy = REGISTRY[options.rule].needs_entropy
    config = predictor.config
    chosen = {}
    for case_id in case_ids:
        image = prepared_image(store, case_id, config)
        probs = predictor.forward(image, collect=False).probs
        foreground = labels_to_original_space(image, (predicted_class(probs) > 0).to("cpu"), config).numpy() > 0
        entropy = None
        if needs_entropy:
            entropy = to_original_space(image, voxel_entropy(probs)[None], config)[0].numpy()
        chosen[case_id] = choose_slices(foreground, entropy, store.geometry(case_id).spacing, options)
    return chosen
