"""Clinician label files: the checks every way in shares (worker upload, `asfda label submit`, files found on disk).

A label file must read as a 3D NIfTI/NRRD volume, lie on its image's grid (after reorientation), hold only the
model's label values and, unless told otherwise, some foreground. Files a user copied into `labels/final/`
themselves get the same checks before anything uses them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from asfda.core.case_ids import validate_case_id
from asfda.core.checksums import sha256_file
from asfda.core.errors import AsfdaError, CorruptImage, UnknownCase
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_masks import is_mask_file
from asfda.data.label_revisions import HISTORY, LabelRevisions
from asfda.data.state import LabelRecord
from asfda.io.label_reading import read_label_volume
from asfda.io.volumes import strip_volume_suffix, volume_suffix
from asfda.models.config import ModelConfig

CANONICAL_SUFFIX = ".nii.gz"
# A recorded file changed this long after its record was written was replaced by hand: check it again.
RECORD_CLOCK_SLACK_S = 2.0


class LabelFileError(AsfdaError):
    """A label file on disk or given by a user fails a check; the message names the file."""


def submit_label_file(
    store: Datastore,
    case_id: str,
    path: Path,
    config: ModelConfig,
    author: Optional[str] = None,
    model_version: Optional[str] = None,
    require_foreground: bool = True,
    extra: Optional[dict] = None,
) -> LabelRecord:
    """Validate a label file against the case's image and the model's labels, then store it atomically.

    For files found on disk; what people submit goes through `asfda.data.label_submit` (revisions, leases)."""
    labels, affine = _read(store, case_id, path)
    return store.save_label(
        case_id,
        LabelTag.FINAL,
        labels,
        affine,
        config.label_values,
        author=author,
        model_version=model_version,
        extra=extra,
        require_foreground=require_foreground,
    )


def _read(store: Datastore, case_id: str, path: Path) -> Tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if path.is_dir():
        raise CorruptImage(f"{path.name}: a label must be one NIfTI or NRRD file, not a folder")
    # Header first, voxels in their own integer type: a small hostile file cannot inflate in memory.
    return read_label_volume(path, store.geometry(case_id))


def read_checked_label(
    store: Datastore, case_id: str, path: Path, config: ModelConfig, require_foreground: bool = True
) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """(labels on the image's voxel order, the image's affine, the values present) of a valid label file."""
    labels, affine = _read(store, case_id, path)
    return store.checked_label(case_id, labels, affine, config.label_values, require_foreground)


def changed_since_recorded(path: Path, record: LabelRecord) -> bool:
    """Whether `path` was written after its record (or the record's time is unreadable): replaced by hand."""
    try:
        recorded = datetime.fromisoformat(record.created).timestamp()
    except ValueError:
        return True
    return path.stat().st_mtime > recorded + RECORD_CLOCK_SLACK_S


def unchecked_final_labels(store: Datastore) -> List[Path]:
    """Entries of labels/final/ that no submission wrote: unrecorded, renamed, or replaced by hand."""
    records = {r.case_id: r for r in store.state.labels(LabelTag.FINAL.value)}
    found = []
    revisions = LabelRevisions(store.root, store.state.path)
    latest = None
    for path in sorted(store.label_dir(LabelTag.FINAL).iterdir()):
        if path.name.startswith(".") or path.name == HISTORY or is_mask_file(path):  # temp files; history; masks
            continue
        record = records.get(strip_volume_suffix(path))
        canonical = path.is_file() and volume_suffix(path) == CANONICAL_SUFFIX
        if canonical and record is not None and not changed_since_recorded(path, record):
            continue
        if canonical and record is not None:
            # Rewritten later than recorded: by a revision's replace finished at restart, or by hand.
            latest = latest if latest is not None else revisions.current_ids(with_sha=True)
            if latest.get(record.case_id, (None, None))[1] == sha256_file(path):
                continue
        found.append(path)
    return found


def check_final_labels(store: Datastore, config: ModelConfig) -> List[str]:
    """Validate unchecked files in labels/final/ and record the good ones (as CASE.nii.gz).

    Returns the case ids taken in. The first bad file stops with a one-line LabelFileError naming it, so
    nothing trains on a label that the upload route would have refused.
    """
    # A replace a crash interrupted, before any check; never the temp-file sweep of recover(): this runs in job
    # children and the CLI while the worker accepts submits, whose temp files it would delete (a 500).
    LabelRevisions(store.root, store.state.path).finish_interrupted()
    taken = []
    folder = store.label_dir(LabelTag.FINAL)
    where = f"labels/{LabelTag.FINAL.value}"
    for path in unchecked_final_labels(store):
        shown = f"{where}/{path.name}"
        suffix = volume_suffix(path)
        if path.is_dir() or not suffix:
            raise LabelFileError(
                f"{shown}: not a label file (expected CASE.nii.gz, .nii or .nrrd; add labels with `asfda label submit`)"
            )
        case_id = strip_volume_suffix(path)
        if suffix != CANONICAL_SUFFIX and (folder / f"{case_id}{CANONICAL_SUFFIX}").exists():
            raise LabelFileError(f"{shown}: case {case_id!r} also has {case_id}{CANONICAL_SUFFIX}; keep one of them")
        try:
            validate_case_id(case_id)
            store.image_path(case_id)
            submit_label_file(store, case_id, path, config, extra={"found_on_disk": path.name})
        except UnknownCase:
            raise LabelFileError(f"{shown}: no image for case {case_id!r} in images/") from None
        except AsfdaError as exc:
            cause = str(exc).removeprefix(f"{path.name}: ")
            raise LabelFileError(f"{shown}: {cause}") from None
        if suffix != CANONICAL_SUFFIX:
            path.unlink()  # its validated copy now lives at labels/final/CASE.nii.gz
        LabelRevisions(store.root, store.state.path).current(case_id)  # kept as an `adopted` revision now
        taken.append(case_id)
    return taken
