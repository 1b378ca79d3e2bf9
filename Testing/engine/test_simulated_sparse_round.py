"""The simulated annotator round on a sparse rank: only the requested slices drawn, the mask submitted with the
label through the one submit path, the cost counted in those slices (what the demo and the benchmark measure)."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.core.annotation_cost import slices_cost, volume_cost
from asfda.core.errors import InvalidMask
from asfda.data.datastore import LabelTag
from asfda.data.label_masks import mask_path
from asfda.data.label_submit import LabelSubmission, submit_label_array
from asfda.io.volumes import load_volume
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings, simulated_round
from asfda.loop.annotator import sparse_annotation
from asfda.query.slices import RequestedSlices
from engine_helpers import blob, pool_datastore, tiny_config


def _truth(cases):
    return {f"case{seed}": blob(seed)[0].astype(np.int64) for seed in range(cases)}


def test_sparse_round_submits_the_requested_slices_with_their_mask(tmp_path):
    store = pool_datastore(tmp_path / "store", 4)
    truth = _truth(4)
    session = LoopSession(store, SessionSettings(device="cpu"))
    done = simulated_round(
        session,
        RankRequest(strategy="random", k=2, seed=1, slices_per_volume=3),
        AdaptRequest(steps=1, use_pseudo_labels=False, gate_enabled=False),
        truth,
        lambda case: store.geometry(case).affine,
    )
    assert len(done.picks) == 2 and done.adaptation.metrics["sparse_labels"] == 2
    for case in done.picks:
        requested = done.ranking.requested_slices[case]
        mask = np.asarray(load_volume(mask_path(store, case)))
        annotated = np.flatnonzero(np.moveaxis(mask, requested.axis, 0).reshape(mask.shape[requested.axis], -1).any(1))
        assert annotated.tolist() == sorted(requested.indices) and mask[mask > 0].size == mask.size // 24 * 3
        label = np.asarray(load_volume(store.label_path(case, LabelTag.FINAL)))
        assert np.array_equal(label, np.where(mask > 0, truth[case], 0))  # nothing drawn outside the slices
        assert done.cost_by_case[case] == slices_cost(truth[case], requested.axis, requested.indices)
    assert done.cost.slices == 6


def test_whole_round_costs_every_slice_and_stores_no_mask(tmp_path):
    store = pool_datastore(tmp_path / "store", 3)
    truth = _truth(3)
    done = simulated_round(
        LoopSession(store, SessionSettings(device="cpu")),
        RankRequest(strategy="random", k=1, seed=0),
        AdaptRequest(steps=1, use_pseudo_labels=False, gate_enabled=False),
        truth,
        lambda case: store.geometry(case).affine,
    )
    (case,) = done.picks
    assert not mask_path(store, case).exists() and done.cost == volume_cost(truth[case], 2)


def test_a_bad_in_memory_mask_is_refused_in_one_line_and_nothing_is_stored(tmp_path):
    store = pool_datastore(tmp_path / "store", 1)
    label = blob(0)[0]
    half, _ = sparse_annotation(label, RequestedSlices(2, list(range(12)), "even"))
    wrong = np.zeros_like(label, dtype=np.uint8)
    wrong[:, :, 20:] = 1  # the drawn slices are not the ones marked
    submission = LabelSubmission("case0", None, "bench", "simulated")
    affine = store.geometry("case0").affine
    with pytest.raises(InvalidMask) as raised:
        submit_label_array(store, submission, half, affine, tiny_config(), None, mask=wrong)
    assert "outside the annotated mask" in str(raised.value) and "\n" not in str(raised.value)
    assert not store.has_label("case0", LabelTag.FINAL) and not mask_path(store, "case0").exists()
