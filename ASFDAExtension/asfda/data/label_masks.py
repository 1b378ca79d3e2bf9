"""Annotated-region masks of sparse clinician labels: which voxels of a label a clinician actually annotated.

A sparse label (a few slices drawn, the rest left alone) is stored as two files in labels/final/: the label
CASE.nii.gz and its mask CASE.mask.nii.gz (uint8, 1 = annotated, 0 = not looked at). Voxels outside the mask
say nothing, so training ignores them; a label without a mask is fully annotated. The mask is read like a
label (header checked before a voxel is decoded) and must lie on the image's grid, hold only 0 and 1, mark
some voxels, and contain every foreground voxel of its label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from monai.data import MetaTensor

from asfda.core.errors import AsfdaError, InvalidMask
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.label_reading import read_label_volume
from asfda.io.volumes import Geometry, check_same_geometry, load_volume, reorient_to, save_label_volume
from asfda.models.config import ModelConfig
from asfda.models.preprocess import prepare_label

__all__ = [
    "MASK_SUFFIX",
    "has_mask",
    "is_mask_file",
    "mask_path",
    "mask_summary",
    "prepared_mask",
    "read_mask",
    "remove_mask",
    "save_mask",
    "slice_coverage",
    "validate_mask",
]

MASK_SUFFIX = ".mask.nii.gz"


def is_mask_file(path: Path) -> bool:
    """Whether a labels/final/ entry is a label's mask rather than a label (CASE.mask.nii.gz)."""
    return Path(path).name.lower().endswith(MASK_SUFFIX)


def mask_path(store: Datastore, case_id: str) -> Path:
    label = store.label_path(case_id, LabelTag.FINAL)
    return label.with_name(f"{case_id}{MASK_SUFFIX}")


def has_mask(store: Datastore, case_id: str) -> bool:
    return mask_path(store, case_id).exists()


def read_mask(path: Path, image: Geometry) -> np.ndarray:
    """A mask file's voxels as uint8 0/1 on the image's grid; one-line errors naming the file."""
    path = Path(path)
    try:
        voxels, affine = read_label_volume(path, image)
        voxels, affine = reorient_to(voxels, affine, image)
        check_same_geometry(image, Geometry(tuple(voxels.shape), np.asarray(affine)))
    except AsfdaError as exc:
        cause = str(exc).removeprefix(f"{path.name}: ")
        cause = "mask " + cause.removeprefix("label ") if cause.startswith("label ") else f"mask: {cause}"
        raise type(exc)(f"{path.name}: {cause}") from None
    values = sorted(int(v) for v in np.unique(voxels))
    if any(v not in (0, 1) for v in values):
        raise InvalidMask(f"{path.name}: mask values must be 0 (not annotated) or 1 (annotated), found {values}")
    return voxels.astype(np.uint8)


def validate_mask(mask: np.ndarray, labels: np.ndarray, name: str) -> None:
    """A mask must mark some voxels and hold every foreground voxel of its label (on the same grid)."""
    if mask.shape != labels.shape:
        raise InvalidMask(f"{name}: mask shape {mask.shape} does not match the label's {labels.shape}")
    if not mask.any():
        raise InvalidMask(f"{name}: the mask marks no voxel as annotated")
    outside = int(np.count_nonzero((labels != 0) & (mask == 0)))
    if outside:
        raise InvalidMask(
            f"{name}: {outside} foreground label voxel(s) lie outside the annotated mask; "
            "mark the slices you drew as annotated"
        )


def save_mask(store: Datastore, case_id: str, mask: np.ndarray) -> Path:
    path = mask_path(store, case_id)
    save_label_volume(path, mask.astype(np.uint8), store.geometry(case_id).affine)
    return path


def remove_mask(store: Datastore, case_id: str) -> None:
    """A label submitted without a mask is fully annotated: an older mask no longer applies."""
    mask_path(store, case_id).unlink(missing_ok=True)


def mask_summary(mask: np.ndarray, case_id: str) -> Dict[str, Any]:
    """What the label record keeps about a mask."""
    annotated = int(np.count_nonzero(mask))
    fraction = round(annotated / mask.size, 6)
    return {"file": f"{case_id}{MASK_SUFFIX}", "annotated_voxels": annotated, "annotated_fraction": fraction}


def prepared_mask(
    store: Datastore, case_id: str, config: ModelConfig, image: Optional[MetaTensor] = None
) -> Optional[torch.Tensor]:
    """The mask in the network's space ((1, X', Y', Z') bool, nearest neighbour), or None: fully annotated."""
    path = mask_path(store, case_id)
    if not path.exists():
        return None
    volume = load_volume(path)
    check_same_geometry(store.geometry(case_id), Geometry.of(volume))
    return prepare_label(volume, config, image).round().to(torch.bool).as_subclass(torch.Tensor)


def checked_mask(store: Datastore, case_id: str, mask: Path, labels: np.ndarray) -> Tuple[np.ndarray, Dict[str, Any]]:
    """A sparse label's mask read on the image's grid and checked against its label (on that grid too), with
    what the label record keeps about it (`annotated_mask`, `requested_slices` coverage); InvalidMask in one line.
    """
    mask = Path(mask)
    voxels = read_mask(mask, store.geometry(case_id))
    validate_mask(voxels, labels, mask.name)
    coverage = slice_coverage(voxels, store.state.requested_slices(case_id))
    return voxels, {"annotated_mask": mask_summary(voxels, case_id), "requested_slices": coverage}


def slice_coverage(mask: np.ndarray, requested: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """How many of a rank's requested slices the mask annotates (a slice with any annotated voxel is done).

    Covering every requested slice is not required: the clinician may stop early, and the reply says so.
    """
    if not requested or not requested.get("indices"):
        return None
    axis = int(requested["axis"])
    indices: List[int] = [int(i) for i in requested["indices"]]
    annotated = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).any(axis=1)
    done = [i for i in indices if 0 <= i < annotated.shape[0] and bool(annotated[i])]
    return {"axis": axis, "requested": indices, "done": done, "coverage": round(len(done) / len(indices), 4)}
