"""The validation gate: held-out clinician labels decide whether a new version becomes active."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from asfda.adapt.finetune import FinetuneOptions, TrainingItem
from asfda.adapt.validation_gate import GateOptions, folds_of, gated_training
from asfda.data.datastore import Datastore, LabelTag
from asfda.loop.adapt import AdaptOptions, adapt_datastore
from asfda.models.networks import build_network
from engine_helpers import blob, shifted, tiny_config, write_nifti


def _items(n):
    return [
        TrainingItem(f"c{i}", torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.int64)) for i in range(n)
    ]


class _Recorder:
    """A fake trainer/scorer: the candidate's Dice is fixed, the parent's too; records what each fit saw."""

    def __init__(self, candidate_dice, parent_dice):
        self.parent, self.candidate_dice, self.parent_dice, self.fits = (
            torch.nn.Linear(1, 1),
            candidate_dice,
            parent_dice,
            [],
        )

    def train(self, items, progress):
        self.fits.append(sorted(i.case_id for i in items))
        if progress:
            progress("train", 1, 1, 0.0)
        return torch.nn.Linear(1, 1), {"loss": 0.0}

    def dice(self, network, items):
        return self.parent_dice if network is self.parent else self.candidate_dice


def test_one_label_is_not_gated_and_says_why():
    r = _Recorder(0.1, 0.9)
    out = gated_training(_items(1), r.parent, r.train, r.dice, GateOptions())
    assert out.decision.activate and out.decision.method == "not gated" and "nothing to hold out" in out.decision.reason
    assert r.fits == [["c0"]]


def test_few_labels_use_k_fold_and_never_train_on_the_fold_they_judge():
    r = _Recorder(0.5, 0.6)
    progress = []
    out = gated_training(
        _items(4),
        r.parent,
        r.train,
        r.dice,
        GateOptions(folds=3, decide_from_labels=0),
        seed=1,
        progress=lambda *a: progress.append(a),
    )
    d = out.decision
    assert d.method == "k-fold" and d.folds == 3 and not d.activate and "below the parent's" in d.reason
    assert not d.advisory
    assert d.candidate_dice == pytest.approx(0.5) and d.parent_dice == pytest.approx(0.6)
    folds = folds_of([f"c{i}" for i in range(4)], 3, 1)
    assert sorted(c for f in folds for c in f) == [f"c{i}" for i in range(4)]
    for fold, fit in zip(folds, r.fits[:3]):
        assert not set(fold) & set(fit) and set(fold) | set(fit) == {f"c{i}" for i in range(4)}
    assert r.fits[-1] == [f"c{i}" for i in range(4)]  # the published version gets every label
    steps = [p[1] for p in progress]  # four trainings, one progress bar
    assert {p[0] for p in progress} == {"train"} and steps == sorted(steps) and progress[-1][1:3] == (4, 4)


def test_a_k_fold_verdict_from_too_few_labels_is_reported_but_not_enforced():
    r = _Recorder(0.5, 0.6)
    d = gated_training(_items(4), r.parent, r.train, r.dice, GateOptions(folds=3), seed=1).decision
    assert d.activate and d.advisory and d.method == "k-fold"
    assert "below the parent's" in d.reason and "advisory" in d.reason and "kept inactive" not in d.reason
    assert d.candidate_dice == pytest.approx(0.5) and d.parent_dice == pytest.approx(0.6)
    # From `decide_from_labels` labels on, the same verdict keeps the version inactive.
    enforced = gated_training(_items(4), r.parent, r.train, r.dice, GateOptions(folds=3, decide_from_labels=4))
    assert not enforced.decision.activate and not enforced.decision.advisory
    # A verdict in the parent's favour is not advisory: there is nothing to override.
    better = _Recorder(0.7, 0.6)
    passing = gated_training(_items(4), better.parent, better.train, better.dice, GateOptions())
    assert passing.decision.activate and not passing.decision.advisory


def test_many_labels_hold_out_a_share_and_publish_the_judged_candidate():
    r = _Recorder(0.8, 0.8)
    out = gated_training(_items(20), r.parent, r.train, r.dice, GateOptions(holdout_fraction=0.2))
    d = out.decision
    assert d.method == "holdout" and d.activate and len(d.held_out) == 4 and len(r.fits) == 1
    assert not set(d.held_out) & set(r.fits[0])  # a tie is "not below": activated


def test_a_worse_version_is_published_inactive_and_can_still_be_activated(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    store = Datastore(tmp_path / "ds")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(3):
        label, image = blob(500 + i)
        write_nifti(store.images_dir / f"case{i}.nii.gz", shifted(image, label, i, 0.2), affine)
        store.save_label(f"case{i}", LabelTag.FINAL, label, affine, config.label_values, author="test")
    v1 = store.models.publish(build_network(config), config, parent=None)
    # tolerance -1: the candidate must beat the parent by more than a Dice of 1, which no model can.
    options = AdaptOptions(
        FinetuneOptions(steps=2, learning_rate=1.0, ema_decay=0.0),
        gate=GateOptions(folds=3, tolerance=-1.0, decide_from_labels=0),
    )
    result = adapt_datastore(store, options)
    assert not result.activated and result.gate["method"] == "k-fold" and "below the parent's" in result.gate["reason"]
    assert store.models.active_version() == v1 and result.version == "v0002"
    assert "kept inactive" in next(v for v in store.models.versions() if v.version == "v0002").note
    store.models.activate(result.version)  # the user may still activate it
    assert store.models.active_version() == "v0002"
    passing = adapt_datastore(store, AdaptOptions(FinetuneOptions(steps=1), gate=GateOptions(tolerance=2.0)))
    assert passing.activated and store.models.active_version() == passing.version == "v0003"


def test_only_labels_the_parent_never_saw_are_held_out():
    r = _Recorder(0.5, 0.6)
    out = gated_training(
        _items(6), r.parent, r.train, r.dice, GateOptions(folds=3, decide_from_labels=0), unseen=["c4", "c5", "c9"]
    )
    assert out.decision.method == "k-fold" and out.decision.held_out == ["c4", "c5"]
    # two folds (one per new label); each fold model trains on every other label, old ones included
    assert r.fits[:2] == [["c0", "c1", "c2", "c3", "c5"], ["c0", "c1", "c2", "c3", "c4"]] or r.fits[:2] == [
        ["c0", "c1", "c2", "c3", "c4"],
        ["c0", "c1", "c2", "c3", "c5"],
    ]
    assert r.fits[-1] == [f"c{i}" for i in range(6)]  # the published version learns from every label


def test_with_one_new_label_the_round_is_not_gated_and_says_why():
    r = _Recorder(0.1, 0.9)
    out = gated_training(_items(5), r.parent, r.train, r.dice, GateOptions(), unseen=["c4"])
    assert out.decision.activate and out.decision.method == "not gated"
    assert "only 1 of 5 labels are new to the parent" in out.decision.reason


def test_a_second_round_holds_out_only_its_new_labels_and_each_version_records_its_label_set(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    store = Datastore(tmp_path / "ds")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    truth = {}
    for i in range(5):
        label, image = blob(600 + i)
        write_nifti(store.images_dir / f"case{i}.nii.gz", shifted(image, label, i, 0.2), affine)
        truth[f"case{i}"] = label
    for i in range(3):
        store.save_label(f"case{i}", LabelTag.FINAL, truth[f"case{i}"], affine, config.label_values, author="test")
    store.models.publish(build_network(config), config, parent=None)
    options = AdaptOptions(FinetuneOptions(steps=1), gate=GateOptions(folds=3, decide_from_labels=0, tolerance=2.0))
    first = adapt_datastore(store, options)
    assert first.gate["held_out"] == ["case0", "case1", "case2"]  # an import saw none of them
    assert sorted(first.metrics["trained_labels"]) == ["case0", "case1", "case2"]
    for i in (3, 4):
        store.save_label(f"case{i}", LabelTag.FINAL, truth[f"case{i}"], affine, config.label_values, author="test")
    second = adapt_datastore(store, options)
    assert second.gate["held_out"] == ["case3", "case4"]  # before: all five, three of which the parent trained on
    assert sorted(second.metrics["trained_labels"]) == [f"case{i}" for i in range(5)]
    corrected = truth["case0"].copy()
    corrected[0, 0, 0] = 1  # one voxel redrawn: another label
    store.save_label("case0", LabelTag.FINAL, corrected, affine, config.label_values, author="test")
    third = adapt_datastore(store, options)  # a corrected label is new to the parent; one new label: not gated
    assert third.gate["method"] == "not gated" and "only 1 of 5 labels are new" in third.gate["reason"]
