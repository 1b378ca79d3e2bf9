"""Sparse-label masks put into labels/final/ by hand: checked with their labels before anything trains.

What people submit goes through `asfda.data.label_submit` (revisions, leases), which takes the mask too; this
is the path for files found on disk, like `label_files.check_final_labels` for labels. Both files are checked
before either is recorded, so a refused mask leaves the case's label as it was.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from asfda.core.errors import AsfdaError, CorruptImage
from asfda.data.datastore import Datastore, LabelTag, validate_label_values
from asfda.data.label_files import RECORD_CLOCK_SLACK_S, LabelFileError, submit_label_file
from asfda.data.label_masks import (
    MASK_SUFFIX,
    is_mask_file,
    mask_summary,
    read_mask,
    remove_mask,
    save_mask,
    slice_coverage,
    validate_mask,
)
from asfda.data.state import LabelRecord
from asfda.io.label_reading import read_label_volume
from asfda.io.volumes import Geometry, check_same_geometry, reorient_to
from asfda.models.config import ModelConfig

__all__ = ["check_final_masks"]


def _label_on_grid(path: Path, image: Geometry) -> np.ndarray:
    if path.is_dir():
        raise CorruptImage(f"{path.name}: a label must be one NIfTI or NRRD file, not a folder")
    labels, affine = read_label_volume(path, image)
    labels, affine = reorient_to(labels, affine, image)
    try:
        check_same_geometry(image, Geometry(tuple(labels.shape), np.asarray(affine)))
    except AsfdaError as exc:
        raise type(exc)(f"{path.name}: {exc}") from None
    return labels


def _record_with_mask(
    store: Datastore,
    case_id: str,
    path: Path,
    config: ModelConfig,
    mask: Optional[Path] = None,
    author: Optional[str] = None,
    model_version: Optional[str] = None,
    require_foreground: bool = True,
    extra: Optional[Dict] = None,
) -> LabelRecord:
    """Store a clinician label; with `mask`, only the voxels it marks count as annotated.

    With a mask a background-only label is accepted (`require_foreground` does not apply): a requested slice
    the organ does not reach is drawn as all background, and saying so is information. The mask itself must
    mark some voxels.

    Returns:
        the label record; with a mask, its extra holds `annotated_mask` (file, annotated voxels, fraction) and,
        when the latest rank asked for slices of this case, `requested_slices` (axis, requested, done, coverage).
    Raises:
        AsfdaError subclasses with one line naming the file at fault; nothing is stored then.
    """
    path = Path(path)
    if mask is None:
        record = submit_label_file(store, case_id, path, config, author, model_version, require_foreground, extra)
        remove_mask(store, case_id)
        return record
    image = store.geometry(case_id)
    labels = _label_on_grid(path, image)
    voxels = read_mask(Path(mask), image)
    validate_mask(voxels, labels, Path(mask).name)
    try:
        validate_label_values(labels, config.label_values, require_foreground=False)
    except AsfdaError as exc:
        raise type(exc)(f"{path.name}: {exc}") from None
    coverage = slice_coverage(voxels, store.state.requested_slices(case_id))
    record = store.save_label(
        case_id,
        LabelTag.FINAL,
        labels,
        image.affine,
        config.label_values,
        author=author,
        model_version=model_version,
        extra={**(extra or {}), "annotated_mask": mask_summary(voxels, case_id), "requested_slices": coverage},
        require_foreground=False,
    )
    save_mask(store, case_id, voxels)
    return record


def _mask_checked(store: Datastore, record: Optional[LabelRecord], path: Path) -> bool:
    """Recorded with its label and not replaced since (a mask written by hand gets the checks first)."""
    if record is None or not record.extra.get("annotated_mask"):
        return False
    try:
        recorded = datetime.fromisoformat(record.created).timestamp()
    except ValueError:
        return False
    return path.stat().st_mtime <= recorded + RECORD_CLOCK_SLACK_S


def check_final_masks(store: Datastore, config: ModelConfig) -> List[str]:
    """Validate masks put into labels/final/ by hand (with their labels) and record them; returns those cases.

    Runs after the labels' own check, before anything trains: the first bad mask, or one without its label,
    stops with a one-line LabelFileError naming it, as the upload would have refused it.
    """
    records = {r.case_id: r for r in store.state.labels(LabelTag.FINAL.value)}
    where = f"labels/{LabelTag.FINAL.value}"
    taken = []
    for path in sorted(store.label_dir(LabelTag.FINAL).iterdir()):
        if path.name.startswith(".") or not is_mask_file(path):
            continue
        case_id = path.name[: -len(MASK_SUFFIX)]
        label = store.label_path(case_id, LabelTag.FINAL)
        if not label.exists():
            raise LabelFileError(f"{where}/{path.name}: a mask without its label {label.name}; add both or neither")
        if _mask_checked(store, records.get(case_id), path):
            continue
        record = records.get(case_id)
        try:
            _record_with_mask(
                store,
                case_id,
                label,
                config,
                mask=path,
                author=record.author if record else None,
                model_version=record.model_version if record else None,
                extra={**(record.extra if record else {}), "mask_found_on_disk": path.name},
            )
        except AsfdaError as exc:
            cause = str(exc).removeprefix(f"{path.name}: ")
            raise LabelFileError(f"{where}/{path.name}: {cause}") from None
        taken.append(case_id)
    return taken
