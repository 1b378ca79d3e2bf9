"""A folder of clinician labels to submit in one call: CASE.nii.gz (or .nii, .nrrd) files, each with an
optional CASE.mask.nii.gz beside it (a sparse label's annotated region).

Only the names are read here; every file then goes through `asfda.data.label_submit` like a single submit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from asfda.core.errors import AsfdaError
from asfda.data.label_masks import MASK_SUFFIX, is_mask_file
from asfda.io.volumes import strip_volume_suffix, volume_suffix

__all__ = ["FolderLabel", "labels_in_folder"]


@dataclass(frozen=True)
class FolderLabel:
    case_id: str
    file: Optional[Path]  # None: the case could not be submitted (see `problem`)
    mask: Optional[Path] = None
    problem: str = ""  # one line: why this entry is not submitted


def labels_in_folder(folder: Path) -> Tuple[List[FolderLabel], List[str]]:
    """(one entry per case, in case-id order; names skipped as not label volumes).

    Two files naming one case (`case1.nii` beside `case1.nii.gz`) and a mask without its label are entries
    with a `problem`, so each is reported on its own line and nothing is stored for them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AsfdaError(f"{folder}: not a folder")
    labels: Dict[str, List[Path]] = {}
    masks: Dict[str, Path] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and is_mask_file(path):
            masks[path.name[: -len(MASK_SUFFIX)]] = path
        elif path.is_file() and volume_suffix(path):
            labels.setdefault(strip_volume_suffix(path), []).append(path)
        else:
            skipped.append(path.name)
    entries = []
    for case_id in sorted(set(labels) | set(masks)):
        files, mask = labels.get(case_id, []), masks.get(case_id)
        if not files:
            entries.append(FolderLabel(case_id, None, mask, f"{mask.name}: a mask without its label {case_id}.nii.gz"))
        elif len(files) > 1:
            names = ", ".join(p.name for p in files)
            entries.append(FolderLabel(case_id, None, mask, f"{len(files)} files name this case ({names}): keep one"))
        else:
            entries.append(FolderLabel(case_id, files[0], mask))
    return entries, skipped
