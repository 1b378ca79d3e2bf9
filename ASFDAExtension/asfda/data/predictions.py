"""Which image and which model content a stored prediction was made from, and whether both still hold.

A prediction file's age says nothing about the image it belongs to (a scan copied in with `cp -p` is
"older" than the prediction of the scan it replaced; a DICOM folder or a PACS series has no one file to
compare). So `infer` records the image fingerprint and the model's content id with the prediction, and a
stored prediction is served only while both still match what is there now.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from asfda.core.errors import ModelNotFound
from asfda.core.names import LabelTag
from asfda.data.datastore import Datastore

IMAGE_KEY, MODEL_KEY = "image_fingerprint", "model_content_id"

__all__ = ["StoredPrediction", "prediction_identity", "stored_prediction"]


def prediction_identity(image_fingerprint: str, model_content_id: str) -> Dict[str, str]:
    """What `infer` records with a prediction (the label record's extra)."""
    return {IMAGE_KEY: image_fingerprint, MODEL_KEY: model_content_id}


@dataclass(frozen=True)
class StoredPrediction:
    case_id: str
    path: Path
    model_version: Optional[str]
    image_fingerprint: Optional[str]
    model_content_id: Optional[str]

    def stale_reason(self, store: Datastore) -> Optional[str]:
        """None when it was made from the image and the model content as they are now; else why not."""
        if self.image_fingerprint is None or self.model_content_id is None or self.model_version is None:
            return "it records no image fingerprint or model content (made before they were recorded)"
        if store.image_fingerprint(self.case_id) != self.image_fingerprint:
            return "the image changed since it was made"
        try:
            content_id = store.models.content_id(self.model_version)
        except ModelNotFound:
            return f"its model version {self.model_version} no longer exists"
        if content_id != self.model_content_id:
            return f"model version {self.model_version} holds other weights or configs than it was made with"
        return None


def stored_prediction(store: Datastore, case_id: str) -> Optional[StoredPrediction]:
    """The case's stored prediction and what it was made from; None when there is none."""
    path = store.label_path(case_id, LabelTag.PREDICTION)
    if not path.exists():
        return None
    records = [r for r in store.state.labels(LabelTag.PREDICTION.value) if r.case_id == case_id]
    record = records[0] if records else None
    extra = record.extra if record else {}
    return StoredPrediction(
        case_id, path, record.model_version if record else None, extra.get(IMAGE_KEY), extra.get(MODEL_KEY)
    )
