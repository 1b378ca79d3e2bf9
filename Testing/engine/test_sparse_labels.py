"""Sparse annotation: annotated-region masks, the masked fine-tuning loss, and the slice choice."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from asfda.adapt.finetune import FinetuneOptions, TrainingItem, finetune, masked_dice_ce
from asfda.adapt.pseudo_labels import fill_unannotated
from asfda.adapt.validation_gate import GateOptions
from asfda.cli import main
from asfda.cli.main import build_parser
from asfda.core.errors import AsfdaError, GeometryMismatch, InvalidMask
from asfda.core.names import SliceRule
from asfda.data.datastore import LabelTag
from asfda.data.hand_placed import check_final_labels
from asfda.data.label_files import RECORD_CLOCK_SLACK_S, LabelFileError
from asfda.data.label_masks import mask_path, slice_coverage
from asfda.data.label_submit import LabelSubmission
from asfda.data.label_submit import submit_label as submit_revision
from asfda.data.sparse_labels import check_final_masks
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings
from asfda.loop.adapt import AdaptOptions, adapt_datastore, dice_per_class
from asfda.loop.label_sets import label_identities
from asfda.models.networks import build_network
from asfda.query.slices import REGISTRY, SliceOptions, choose_slices, thickest_axis
from asfda.scoring.options import ScoringOptions
from engine_helpers import SHAPE, blob, pool_datastore, tiny_config, write_nifti
from monai.losses import DiceCELoss


@pytest.fixture
def store(tmp_path):
    return pool_datastore(tmp_path / "store", 2)


def submit_label(store, case_id, path, config, mask=None, author=None):
    """The one submit path (as the worker and the CLI call it); each call replaces the case's label."""
    submission = LabelSubmission(case_id, path, author, "cli", overwrite=True, mask=mask)
    return submit_revision(store, submission, config, None).record


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


def test_background_only_sparse_label_is_accepted_with_its_mask(store, tmp_path):
    label, _ = blob(0)
    mask = np.zeros_like(label)
    mask[:, :, 0] = 1  # a drawn slice the organ does not reach: all background, and that is information
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    record = submit_label(store, "case0", label_file, tiny_config(), mask=mask_file)
    assert record.extra["label_values"] == [0] and mask_path(store, "case0").exists()


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
    return TrainingItem(
        case_id,
        torch.as_tensor(image)[None],
        torch.as_tensor(label.astype(np.int64))[None],
        None if mask is None else torch.as_tensor(mask.astype(bool))[None],
    )


def _trained(items, steps: int = 4):
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
    logits = torch.randn(2, 2, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    label = torch.randint(0, 2, (2, 1, 6, 6, 6), generator=torch.Generator().manual_seed(1)).float()
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    assert torch.allclose(masked_dice_ce(logits, label, torch.ones_like(label)), expected, atol=1e-6)


def test_gate_dice_of_a_sparse_label_counts_annotated_voxels_only():
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


# -- slice selection ---------------------------------------------------------------------------------------------


def _slab(shape=(10, 12, 30), first=8, last=19, axis=2) -> np.ndarray:
    """Predicted foreground filling slices first..last along `axis` (a box in the middle of the others)."""
    foreground = np.zeros(shape, bool)
    index = [slice(3, 6)] * 3
    index[axis] = slice(first, last + 1)
    foreground[tuple(index)] = True
    return foreground


def test_thickest_axis_is_the_largest_spacing_and_the_last_of_equals():
    assert thickest_axis([0.8, 0.8, 5.0]) == 2
    assert thickest_axis([3.0, 0.7, 0.7]) == 0
    assert thickest_axis([1.0, 1.0, 1.0]) == 2


def test_even_slices_spread_over_the_predicted_foreground_extent():
    chosen = choose_slices(_slab(), None, [1.0, 1.0, 3.0], SliceOptions(per_volume=4))
    assert chosen.axis == 2 and chosen.rule == "even"
    assert chosen.indices == [9, 12, 15, 18]  # centres of four equal parts of slices 8..19
    across = choose_slices(_slab(axis=1, first=2, last=3), None, [1.0, 1.0, 3.0], SliceOptions(per_volume=5, axis=1))
    assert across.axis == 1 and across.indices == [2, 3]  # a thin extent: all of its slices
    nothing = choose_slices(np.zeros((4, 4, 8), bool), None, [1, 1, 1], SliceOptions(per_volume=2))
    assert nothing.indices == [2, 6]  # no predicted foreground: the whole axis


def test_uncertainty_slices_are_the_most_uncertain_inside_the_extent():
    entropy = np.zeros((10, 12, 30), np.float32)
    entropy[:, :, 10] = 0.9
    entropy[:, :, 17] = 0.5
    entropy[:, :, 25] = 1.0  # most uncertain, but outside the predicted foreground (8..19)
    options = SliceOptions(per_volume=2, rule=SliceRule.UNCERTAINTY)
    chosen = choose_slices(_slab(), entropy, [1.0, 1.0, 3.0], options)
    assert chosen.indices == [10, 17] and chosen.rule == "uncertainty"


def test_slice_rule_registry_matches_the_names():
    assert set(REGISTRY) == set(SliceRule)


def test_bad_slice_requests_are_one_line_errors():
    for request, words in [
        (RankRequest(slices_per_volume=-1), "slices per volume"),
        (RankRequest(slices_per_volume=4, slice_axis="3"), "slice axis"),
        (RankRequest(slices_per_volume=4, slice_rule="random"), "slice rule"),
    ]:
        with pytest.raises(AsfdaError, match=words):
            request.slice_options()


def test_sparse_rank_stores_requested_slices_and_submit_reports_coverage(store, tmp_path):
    session = LoopSession.open(store.root, SessionSettings(device="cpu"))
    outcome = session.rank(RankRequest(strategy="random", k=1, slices_per_volume=3, slice_axis="auto"))
    (pick,) = [r.case_id for r in outcome.ranked if r.selected]
    requested = outcome.requested_slices[pick]
    assert requested.axis == 2  # spacing (1.5, 1.0, 2.0): the thickest slices are along axis 2
    assert len(requested.indices) == 3 and requested.indices == sorted(set(requested.indices))
    stored = {r.case_id: r.requested_slices for r in store.state.scores("random")}
    assert stored[pick] == requested.to_dict() and all(v is None for c, v in stored.items() if c != pick)
    label, _ = blob(int(pick.removeprefix("case")))
    mask = np.zeros_like(label)
    mask[:, :, requested.indices[0]] = 1  # one of the three requested slices drawn
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    record = submit_label(store, pick, label_file, tiny_config(), mask=mask_file)
    coverage = record.extra["requested_slices"]
    assert coverage["done"] == requested.indices[:1] and coverage["coverage"] == pytest.approx(1 / 3, abs=1e-3)


def test_cli_sparse_rank_and_masked_submit(store, tmp_path, capsys):
    root = str(store.root)
    assert main(["rank", "--datastore", root, "--strategy", "random", "--k", "1", "--slices-per-volume", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (picked,) = [line for line in lines[1:] if "*" in line]
    assert "axis 2: " in picked
    case_id = picked.split()[1]
    indices = [int(i) for i in picked.split("axis 2: ")[1].split()]
    rank = ["rank", "--datastore", root, "--strategy", "random", "--k", "1", "--slices-per-volume", "2"]
    assert main(rank + ["--json"]) == 0
    rows = {row["case_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[case_id]["requested_slices"] == {"axis": 2, "indices": indices, "rule": "even"}
    label, _ = blob(int(case_id.removeprefix("case")))
    mask = np.zeros_like(label)
    mask[:, :, indices] = 1
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    command = ["label", "submit", "--datastore", root, case_id, str(label_file), "--mask", str(mask_file)]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "sparse: " in out and "requested slices done: 2 of 2" in out
    assert main(command[:-2] + ["--mask", str(write_nifti(tmp_path / "m.nii.gz", np.zeros_like(mask)))]) == 2
    err = capsys.readouterr().err.strip()
    assert "m.nii.gz" in err and "no voxel" in err and "\n" not in err


def test_cli_adapt_fill_flag_reaches_the_options():
    args = build_parser().parse_args(["adapt", "--datastore", "ds", "--fill-unannotated"])
    options = AdaptRequest.from_args(args).adapt_options(ScoringOptions())
    assert options.fill_unannotated_with_pseudo_labels is True
    assert AdaptRequest().adapt_options(ScoringOptions()).fill_unannotated_with_pseudo_labels is False


def test_masks_put_into_labels_final_by_hand_are_checked_before_use(store, tmp_path):
    label, _ = blob(0)
    mask = _half_mask(label)
    final = store.label_dir(LabelTag.FINAL)
    write_nifti(final / "case0.nii.gz", label * mask)
    write_nifti(final / "case0.mask.nii.gz", mask)
    assert check_final_labels(store, tiny_config()) == ["case0"]  # submitted with the mask beside it
    assert check_final_masks(store, tiny_config()) == []
    (record,) = store.state.labels(LabelTag.FINAL.value)
    assert record.extra["annotated_mask"]["annotated_voxels"] == int(mask.sum())
    assert (final / "history" / "case0" / "r0001.mask.nii.gz").is_file()  # kept with its revision
    assert check_final_masks(store, tiny_config()) == []  # recorded: not checked again
    time.sleep(RECORD_CLOCK_SLACK_S + 0.1)
    write_nifti(final / "case0.mask.nii.gz", np.flip(mask, axis=2).copy())  # replaced by hand, now wrong
    with pytest.raises(LabelFileError, match=r"labels/final/case0.mask.nii.gz: .*outside the annotated mask"):
        check_final_masks(store, tiny_config())
    write_nifti(final / "case1.mask.nii.gz", mask)
    (final / "case0.mask.nii.gz").unlink()
    with pytest.raises(LabelFileError, match="a mask without its label case1.nii.gz"):
        check_final_masks(store, tiny_config())


def test_a_sparse_labels_identity_changes_with_its_mask(store, tmp_path):
    label, _ = blob(0)
    mask = _half_mask(label)
    label_file, mask_file = _sparse_files(tmp_path, label, mask)
    submit_label(store, "case0", label_file, tiny_config(), mask=mask_file)
    first = label_identities(store, ["case0"])["case0"]
    wider = mask.copy()
    wider[:, :, -1] = 1  # one more slice annotated (all background there): the label file stays the same
    submit_label(store, "case0", label_file, tiny_config(), mask=write_nifti(tmp_path / "wider.nii.gz", wider))
    assert label_identities(store, ["case0"])["case0"] != first
    submit_label(store, "case0", write_nifti(tmp_path / "full.nii.gz", label * mask), tiny_config())
    assert "+" not in label_identities(store, ["case0"])["case0"]  # fully annotated: the label's hash alone
