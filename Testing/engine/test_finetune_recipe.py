"""The fine-tuning recipe: seeded (bit-identical) runs, prefetching, foreground crops, lateral flips, frozen BN."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from asfda.adapt.finetune import (
    CropMode,
    FinetuneOptions,
    TrainingItem,
    _batch_transform,
    _sample,
    finetune,
    freeze_norm_statistics,
    has_lateral_labels,
    use_flip,
)
from asfda.models.networks import build_network
from engine_helpers import blob, tiny_config


def _items(seeds):
    found = []
    for s in seeds:
        label, image = blob(s)
        z = (image - image.mean()) / image.std()
        found.append(TrainingItem(f"c{s}", torch.as_tensor(z[None]), torch.as_tensor(label[None].astype(np.int64))))
    return found


def _train(seed, prefetch=2, crop=CropMode.FOREGROUND):
    config = tiny_config()
    config.roi_size = [16, 16, 16]  # smaller than the volume: crops and flips are random
    torch.manual_seed(123)  # the same starting weights in every run
    network = build_network(config)
    labeled = _items([1, 2])
    pseudo = [TrainingItem("p", labeled[0].image, labeled[0].label, labeled[0].label > 0)]
    options = FinetuneOptions(steps=4, seed=seed, prefetch=prefetch, crop=crop, flip_augment=True)
    finetune(network, config.roi_size, labeled, pseudo, options)
    return network.state_dict()


def test_the_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    first, second, other = _train(7), _train(7), _train(8)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].dtype.is_floating_point)


def test_prefetching_changes_the_timing_not_the_batches():
    threaded, inline = _train(3, prefetch=2, crop=CropMode.UNIFORM), _train(3, prefetch=0, crop=CropMode.UNIFORM)
    assert all(torch.equal(threaded[k], inline[k]) for k in threaded)


def test_foreground_crops_keep_label_mask_and_image_aligned_and_hit_the_organ():
    label = torch.zeros(1, 40, 40, 40, dtype=torch.int64)
    label[0, 30:34, 30:34, 30:34] = 1  # a small organ in a corner of a large volume
    image = label.float() * 100 + torch.arange(40.0).view(1, 40, 1, 1)  # position-coded, organ bright
    mask = label.bool()
    item = TrainingItem("x", image, label, mask)
    options = FinetuneOptions(crop=CropMode.FOREGROUND, foreground_ratio=1.0)
    transform = _batch_transform([8, 8, 8], flip=True, options=options, seed=0)
    uniform = _batch_transform([8, 8, 8], flip=False, options=FinetuneOptions(crop=CropMode.UNIFORM), seed=0)
    hits_uniform = 0
    for _ in range(20):
        s = _sample(item, transform)
        assert s["image"].shape == (1, 8, 8, 8)
        assert s["label"].sum() > 0  # every patch is centred on the organ
        assert torch.equal(s["label"] > 0, s["image"] >= 100)  # image and label cropped (and flipped) together
        assert torch.equal(s["mask"] > 0, s["label"] > 0)
        hits_uniform += int(_sample(item, uniform)["label"].sum() > 0)
    assert hits_uniform < 20


def test_lateral_label_sets_switch_the_left_right_flip_off():
    assert has_lateral_labels(["background", "kidney_left", "spleen"])
    assert has_lateral_labels(["background", "Right-Lung"])
    assert has_lateral_labels(["background", "adrenal_l"])
    assert has_lateral_labels(["background", "LeftKidney"])
    assert not has_lateral_labels(["background", "brain", "liver", "spleen", "grey_matter"])
    assert not use_flip(FinetuneOptions(), ["background", "kidney_r"])
    assert use_flip(FinetuneOptions(), ["background", "liver"])
    assert use_flip(FinetuneOptions(flip_augment=True), ["background", "kidney_r"])  # the config switch wins
    assert not use_flip(FinetuneOptions(flip_augment=False), ["background", "liver"])


def test_frozen_norm_statistics_stay_at_the_source_values():
    config = tiny_config()
    torch.manual_seed(0)
    network = build_network(config)
    before = {k: v.clone() for k, v in network.state_dict().items() if "running" in k}
    assert before and freeze_norm_statistics(copy.deepcopy(network)) > 0
    options = FinetuneOptions(steps=2, seed=0, freeze_norm_stats=True, ema_decay=0.0)
    finetune(network, config.roi_size, _items([1]), [], options)
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    moved = copy.deepcopy(network)
    finetune(moved, config.roi_size, _items([1]), [], FinetuneOptions(steps=2, seed=0, ema_decay=0.0))
    assert any(not torch.equal(before[k], moved.state_dict()[k]) for k in before)


def test_a_failing_batch_surfaces_as_an_error_not_a_short_run():
    config = tiny_config()
    broken = TrainingItem("bad", torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64))  # not a 3D volume
    with pytest.raises(RuntimeError, match="applying transform"):  # the preparing thread's own error
        finetune(build_network(config), config.roi_size, [broken], [], FinetuneOptions(steps=2))
