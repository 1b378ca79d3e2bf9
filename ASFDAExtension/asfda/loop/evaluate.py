"""Score a model version against reference labels: Dice and 95th-percentile Hausdorff distance per case and label.

Predictions are made in memory on each image's own grid, exactly as `asfda infer` writes them
(asfda.loop.infer.predicted_labels; nothing in labels/prediction/ changes), and compared with the reference
there, so the distances are in the image's millimetres. Dice is asfda.models.dice.class_dice (its one-hot
pair built once per case, for Dice and HD95 alike).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from monai.metrics import compute_hausdorff_distance

from asfda.core.errors import AsfdaError
from asfda.data.datastore import Datastore, LabelTag, validate_label_values
from asfda.io.volumes import Geometry, check_same_geometry, load_volume, reorient_to, strip_volume_suffix, volume_suffix
from asfda.loop.infer import predicted_labels
from asfda.models.dice import one_hot_dice, one_hot_pair
from asfda.models.inference import Precision, Predictor

ProgressFn = Callable[[str, int, int], None]


@dataclass
class LabelScore:
    case_id: str
    label: str
    value: int
    dice: float
    hd95_mm: Optional[float]  # None when the prediction or the reference has none of this label
    in_training: bool  # the case has a clinician label in this datastore, so the model may have trained on it


@dataclass
class LabelSummary:
    label: str
    value: int
    cases: int
    mean_dice: float
    mean_hd95_mm: Optional[float]
    held_out_cases: int
    held_out_mean_dice: Optional[float]


@dataclass
class Evaluation:
    model_version: str
    scores: List[LabelScore]
    summary: List[LabelSummary]
    skipped: List[str]  # reference files with no case in the datastore

    def to_dict(self) -> Dict:
        return {
            "model_version": self.model_version,
            "scores": [asdict(s) for s in self.scores],
            "summary": [asdict(s) for s in self.summary],
            "skipped": self.skipped,
        }


def reference_labels(folder: Path, case_ids: List[str]) -> Tuple[Dict[str, Path], List[str]]:
    """Reference files in `folder` by case id (CASE.nii.gz, .nii or .nrrd), and the names left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AsfdaError(f"{folder}: reference label folder not found")
    known = set(case_ids)
    found: Dict[str, Path] = {}
    skipped: List[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        case_id = strip_volume_suffix(path)
        if not volume_suffix(path) or case_id not in known:
            skipped.append(path.name)
            continue
        if case_id in found:
            raise AsfdaError(f"{folder}: two reference labels for {case_id!r}: {found[case_id].name}, {path.name}")
        found[case_id] = path
    if not found:
        raise AsfdaError(f"{folder}: no reference label is named after a datastore case (CASE.nii.gz)")
    return found, skipped


def _reference(path: Path, geometry: Geometry, allowed: List[int]) -> np.ndarray:
    try:
        volume = load_volume(path)
        labels, affine = reorient_to(volume.numpy(), volume.affine.numpy().astype(np.float64), geometry)
        check_same_geometry(geometry, Geometry(tuple(labels.shape), affine))
        validate_label_values(labels, allowed, require_foreground=False)
    except AsfdaError as exc:
        raise AsfdaError(f"reference {path.name}: {str(exc).removeprefix(f'{path.name}: ')}") from None
    return np.rint(labels).astype(np.int64)


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def score_case(prediction: np.ndarray, reference: np.ndarray, n_classes: int, spacing) -> List[Tuple[float, float]]:
    """(Dice, HD95 mm) for each foreground class; Dice is 1 where both volumes lack the class."""
    pred, ref = one_hot_pair(prediction, reference, n_classes)
    dice = one_hot_dice(pred, ref)
    with warnings.catch_warnings():  # MONAI warns for a class missing from one side; that gives None below
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(
            pred, ref, include_background=False, percentile=95, spacing=[float(s) for s in spacing]
        )[0]
    return [(d, float(h)) for d, h in zip(dice, hd95)]


def evaluate(
    store: Datastore,
    references: Dict[str, Path],
    version: Optional[str] = None,
    device: str = "cpu",
    progress: Optional[ProgressFn] = None,
    precision: Precision = Precision.AUTO,
) -> Evaluation:
    """Evaluate `version` (default: the active one) without activating it.

    Args:
        references: reference label file per case id (see `reference_labels`).
        version: the model version (default: the active one); device / precision: as for inference.
    Returns:
        per-case and per-label Dice and HD95, and their means.
    """
    model = store.models.load(version, device=device)
    config = model.config
    predictor = Predictor(model.network, config, device, precision)
    names = {value: name for name, value in config.labels.items()}
    scores: List[LabelScore] = []
    for index, (case_id, path) in enumerate(sorted(references.items())):
        geometry = store.geometry(case_id)
        reference = _reference(path, geometry, config.label_values)
        prediction = predicted_labels(store, case_id, model, predictor)
        trained = store.has_label(case_id, LabelTag.FINAL)
        per_class = score_case(prediction, reference, config.out_channels, geometry.spacing)
        for value, (dice, hd95) in zip(config.label_values[1:], per_class):
            scores.append(LabelScore(case_id, names[value], value, dice, _finite(hd95), trained))
        if progress:
            progress("evaluate", index + 1, len(references))
    return Evaluation(model.version, scores, summarise(scores), [])


def _mean(values: List[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def summarise(scores: List[LabelScore]) -> List[LabelSummary]:
    summary = []
    for value in sorted({s.value for s in scores}):
        rows = [s for s in scores if s.value == value]
        held_out = [s.dice for s in rows if not s.in_training]
        summary.append(
            LabelSummary(
                rows[0].label,
                value,
                len(rows),
                float(np.mean([s.dice for s in rows])),
                _mean([s.hd95_mm for s in rows if s.hd95_mm is not None]),
                len(held_out),
                _mean(held_out),
            )
        )
    return summary
