"""Clinician label files: the checks every way in shares (worker upload, `asfda label submit`, files found on disk).

A label file must read as a 3D NIfTI/NRRD volume, lie on its image's grid (after reorientation), hold only the
model's label values and, unless told otherwise, some foreground. Files a user copied into `labels/final/`
themselves are found here and submitted like an upload before anything uses them (asfda.data.hand_placed).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import List, Tuple

import numpy as np

from asfda.core.checksums import sha256_file
from asfda.core.errors import AsfdaError, CorruptImage
from asfda.core.file_identity import stat_identity
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
    latest = LabelRevisions(store.root, store.state.path).latest_written()
    found = []
    for path in sorted(store.label_dir(LabelTag.FINAL).iterdir()):
        if path.name.startswith(".") or path.name == HISTORY or is_mask_file(path):  # temp files; history; masks
            continue
        record = records.get(strip_volume_suffix(path))
        canonical = path.is_file() and volume_suffix(path) == CANONICAL_SUFFIX
        if canonical and record is not None and _written_by_its_record(path, record, latest):
            continue
        found.append(path)
    return found


def _written_by_its_record(path: Path, record: LabelRecord, latest: dict) -> bool:
    """Whether `path` is the file its record's submit left (or holds exactly its revision's bytes).

    Only the revision the record names was checked: a latest revision adopted when the case was leased or
    listed (a file copied in by hand) was not. A record from before revisions names none."""
    recorded = record.extra.get("revision")
    now, sha, stat = latest.get(record.case_id, (None, None, None))
    if recorded is not None and recorded != now:
        return False  # the latest revision is not the one its submit checked
    if stat is not None:
        # The replace's own stat: any later copy over it differs (ctime), however close in time, `cp -p` too.
        return stat == stat_identity(path) or sha == sha256_file(path)
    if not changed_since_recorded(path, record):  # from before stats were kept: by time
        return True
    # Rewritten later than recorded: by a revision's replace finished at restart, or by hand.
    return sha == sha256_file(path)
