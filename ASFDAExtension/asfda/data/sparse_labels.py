"""Sparse-label masks put into labels/final/ by hand: checked with their labels before anything trains.

What people submit goes through `asfda.data.label_submit` (revisions, leases), which takes the mask too; this
is the path for files found on disk, like `label_files.check_final_labels` for labels. Both files are checked
before either is recorded, so a refused mask leaves the case's label as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from asfda.core.errors import AsfdaError
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_files import LabelFileError, changed_since_recorded, read_checked_label
from asfda.data.label_masks import MASK_SUFFIX, checked_mask, is_mask_file, save_mask
from asfda.data.state import LabelRecord
from asfda.models.config import ModelConfig

__all__ = ["check_final_masks"]


def _record_with_mask(
    store: Datastore,
    case_id: str,
    path: Path,
    config: ModelConfig,
    mask: Path,
    author: Optional[str] = None,
    model_version: Optional[str] = None,
    extra: Optional[Dict] = None,
) -> LabelRecord:
    """Record a hand-placed label with its mask: only the voxels the mask marks count as annotated.

    A background-only label is accepted (a requested slice the organ does not reach is drawn as all background,
    and saying so is information); the mask itself must mark some voxels.

    Returns:
        the label record; its extra holds `annotated_mask` (file, annotated voxels, fraction) and, when the latest
        rank asked for slices of this case, `requested_slices` (axis, requested, done, coverage).
    Raises:
        AsfdaError subclasses with one line naming the file at fault; nothing is stored then.
    """
    path = Path(path)
    try:  # on the image's grid, known values; with a mask a background-only label is information
        labels, affine, _values = read_checked_label(store, case_id, path, config, require_foreground=False)
    except AsfdaError as exc:
        if path.name in str(exc):
            raise
        raise type(exc)(f"{path.name}: {exc}") from None
    voxels, recorded = checked_mask(store, case_id, Path(mask), labels)
    record = store.save_label(
        case_id,
        LabelTag.FINAL,
        labels,
        affine,
        config.label_values,
        author=author,
        model_version=model_version,
        extra={**(extra or {}), **recorded},
        require_foreground=False,
    )
    save_mask(store, case_id, voxels)
    return record


def _mask_checked(store: Datastore, record: Optional[LabelRecord], path: Path) -> bool:
    """Recorded with its label and not replaced since (a mask written by hand gets the checks first)."""
    if record is None or not record.extra.get("annotated_mask"):
        return False
    return not changed_since_recorded(path, record)


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
