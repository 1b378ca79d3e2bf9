"""Sparse annotation: annotated-region masks, the masked fine-tuning loss, and the slice choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from asfda.core.errors import GeometryMismatch, InvalidMask
from asfda.data.datastore import LabelTag
from asfda.data.label_files import check_final_labels
from asfda.data.label_masks import mask_path, slice_coverage
from asfda.data.sparse_labels import submit_label
from engine_helpers import SHAPE, blob, pool_datastore, tiny_config, write_nifti


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


# -- the masked loss ---------------------------------------------------------------------------------------------


def _item(case_id: str, label: np.ndarray, mask, image: np.ndarray):
    from asfda.adapt.finetune import TrainingItem

    return TrainingItem(
        case_id,
        torch.as_tensor(image)[None],
        torch.as_tensor(label.astype(np.int64))[None],
        None if mask is None else torch.as_tensor(mask.astype(bool))[None],
    )


def _trained(items, steps: int = 4):
    from asfda.adapt.finetune import FinetuneOptions, finetune
    from asfda.models.networks import build_network

    torch.manual_seed(0)
    network = build_network(tiny_config())
    options = FinetuneOptions(steps=steps, batch_size=2, prefetch=0, ema_decay=0.0, seed=3)
    finetune(network, list(SHAPE), items, [], options)
    return {k: v.clone() for k, v in network.state_dict().items()}


def test_unannotated_voxels_do_not_change_training():
    label, image = blob(1)
    mask = _half_mask(label)
    annotated_only = label * mask
    wrong = annotated_only.copy()
    noise = np.random.default_rng(7).integers(0, 2, label.shape).astype(np.uint8)
    wrong[mask == 0] = noise[mask == 0]  # arbitrary, wrong labels where nobody looked
    first = _trained([_item("a", annotated_only, mask, image)])
    second = _trained([_item("a", wrong, mask, image)])
    assert all(torch.equal(first[k], second[k]) for k in first)
    # ... and the mask matters: read as fully annotated, the wrong labels train a different network.
    unmasked = _trained([_item("a", wrong, None, image)])
    assert not all(torch.equal(first[k], unmasked[k]) for k in first)


def test_masked_dice_ce_with_everything_annotated_is_dice_ce():
    from asfda.adapt.finetune import masked_dice_ce
    from monai.losses import DiceCELoss

    logits = torch.randn(2, 2, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    label = torch.randint(0, 2, (2, 1, 6, 6, 6), generator=torch.Generator().manual_seed(1)).float()
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    assert torch.allclose(masked_dice_ce(logits, label, torch.ones_like(label)), expected, atol=1e-6)


def test_gate_dice_of_a_sparse_label_counts_annotated_voxels_only():
    from asfda.loop.adapt import dice_per_class

    label, image = blob(2)
    mask = _half_mask(label)
    predicted = torch.as_tensor(label)

    class Fixed:
        def label_map(self, _image):
            return predicted

    wrong_outside = label.copy()
    wrong_outside[mask == 0] = 1 - wrong_outside[mask == 0]
    sparse = _item("s", wrong_outside, mask, image)
    assert dice_per_class(None, lambda _network: Fixed(), [sparse], 2) == 1.0
    assert dice_per_class(None, lambda _network: Fixed(), [_item("f", wrong_outside, None, image)], 2) < 0.9


def test_fill_covers_only_the_unannotated_confident_voxels():
    from asfda.adapt.pseudo_labels import fill_unannotated

    label, image = blob(3)
    mask = _half_mask(label)
    confident = np.zeros_like(mask, dtype=bool)
    confident[::2] = True

    class Teacher:
        def confident_label_map(self, _image, _confidence):
            return torch.as_tensor(label), torch.as_tensor(confident)

    class Scorer:
        predictor = Teacher()

    items = fill_unannotated(Scorer(), [_item("s", label * mask, mask, image), _item("f", label, None, image)], 0.9)
    assert [item.case_id for item in items] == ["s"]
    assert torch.equal(items[0].mask[0], torch.as_tensor(confident & (mask == 0)))


def test_adapt_round_trains_on_a_stored_sparse_label_with_fill(store, tmp_path):
    from asfda.adapt.finetune import FinetuneOptions
    from asfda.adapt.validation_gate import GateOptions
    from asfda.loop.adapt import AdaptOptions, adapt_datastore

    label, _ = blob(0)
    mask = _half_mask(label)
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    submit_label(store, "case0", label_file, tiny_config(), mask=mask_file)
    options = AdaptOptions(
        FinetuneOptions(steps=3, prefetch=0),
        use_pseudo_labels=False,
        gate=GateOptions(enabled=False),
        fill_unannotated_with_pseudo_labels=True,
    )
    options.reliability.voxel_confidence = 0.0  # an untrained teacher: every voxel counts as confident
    metrics = adapt_datastore(store, options).metrics
    assert metrics["sparse_labels"] == 1 and metrics["filled_sparse_labels"] == 1
