"""Sparse annotation: annotated-region masks, the masked fine-tuning loss, and the slice choice."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.core.errors import GeometryMismatch, InvalidMask
from asfda.data.datastore import LabelTag
from asfda.data.label_files import check_final_labels
from asfda.data.label_masks import mask_path, slice_coverage
from asfda.data.sparse_labels import submit_label
from engine_helpers import blob, pool_datastore, tiny_config, write_nifti


@pytest.fixture
def store(tmp_path):
    return pool_datastore(tmp_path / "store", 2)


def _half_mask(label: np.ndarray) -> np.ndarray:
    """Annotated: the slices along axis 2 up to the middle, which hold part of the organ."""
    mask = np.zeros_like(label, dtype=np.uint8)
    mask[:, :, : label.shape[2] // 2 + 1] = 1
    return mask


def _sparse_files(tmp_path, label: np.ndarray, mask: np.ndarray):
    return write_nifti(tmp_path / "label.nii.gz", label * mask), write_nifti(tmp_path / "mask.nii.gz", mask)


def _nothing_stored(store) -> bool:
    return not store.has_label("case0", LabelTag.FINAL) and not mask_path(store, "case0").exists()


def test_sparse_label_is_stored_with_its_mask(store, tmp_path):
    label, _ = blob(0)
    mask = _half_mask(label)
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    record = submit_label(store, "case0", label_file, tiny_config(), mask=mask_file, author="dr")
    assert record.extra["annotated_mask"]["annotated_voxels"] == int(mask.sum())
    assert record.extra["annotated_mask"]["file"] == "case0.mask.nii.gz"
    assert mask_path(store, "case0").exists()
    assert check_final_labels(store, tiny_config()) == []  # the mask file is not taken for a label of its own
    submit_label(store, "case0", write_nifti(tmp_path / "full.nii.gz", label), tiny_config())
    assert not mask_path(store, "case0").exists()  # a label without a mask is fully annotated


@pytest.mark.parametrize(
    "make_mask, error, words",
    [
        (lambda m: m[:-2], GeometryMismatch, "shape"),
        (lambda m: np.zeros_like(m), InvalidMask, "no voxel"),
        (lambda m: m * 2, InvalidMask, "0 (not annotated) or 1"),
        (lambda m: np.flip(m, axis=2).copy(), InvalidMask, "outside the annotated mask"),
    ],
    ids=["mismatched_grid", "empty", "values_outside_0_1", "foreground_outside_mask"],
)
def test_bad_masks_are_refused_in_one_line_and_nothing_is_stored(store, tmp_path, make_mask, error, words):
    label, _ = blob(0)
    mask = _half_mask(label)
    label_file = write_nifti(tmp_path / "label.nii.gz", label * mask)
    mask_file = write_nifti(tmp_path / "bad-mask.nii.gz", make_mask(mask).astype(np.uint8))
    with pytest.raises(error) as raised:
        submit_label(store, "case0", label_file, tiny_config(), mask=mask_file)
    message = str(raised.value)
    assert words in message and "\n" not in message and "bad-mask.nii.gz" in message
    assert _nothing_stored(store)


def test_mask_on_another_affine_is_refused(store, tmp_path):
    label, _ = blob(0)
    mask = _half_mask(label)
    label_file = write_nifti(tmp_path / "label.nii.gz", label * mask)
    moved = np.diag([1.5, 1.0, 2.0, 1.0])
    moved[:3, 3] = [5.0, 0.0, 0.0]
    mask_file = write_nifti(tmp_path / "mask.nii.gz", mask, moved)
    with pytest.raises(GeometryMismatch, match="origin"):
        submit_label(store, "case0", label_file, tiny_config(), mask=mask_file)
    assert _nothing_stored(store)


def test_slice_coverage_counts_requested_slices_with_annotation():
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[:, 1, :] = 1
    mask[:, 3, :2] = 1
    coverage = slice_coverage(mask, {"axis": 1, "indices": [1, 2, 3]})
    assert coverage == {"axis": 1, "requested": [1, 2, 3], "done": [1, 3], "coverage": 0.6667}
    assert slice_coverage(mask, None) is None
