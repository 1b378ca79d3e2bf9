"""The ClaSP PE-style baseline (asfda.query.stratified): class-stratified share, shrinking noise, seeded picks."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.query.signals import CaseSignals
from asfda.query.strategies import RankingOptions, Strategy, rank
from asfda.query.stratified import CLASS_SHARE, class_quotas, noise_scale, perturbed_log_scores, stratified_picks


def _counts(n, rare_cases, rare_voxels=50):
    """n volumes of three classes; class 2 (rare) predicted only in `rare_cases`."""
    counts = np.zeros((n, 3), dtype=int)
    counts[:, 0], counts[:, 1] = 10_000, 2_000
    for i in rare_cases:
        counts[i, 2] = rare_voxels
    return counts


def test_two_thirds_of_the_budget_go_to_the_predicted_classes_and_a_rare_class_gets_its_share():
    n, k = 40, 9
    counts = _counts(n, rare_cases=[37, 38, 39])
    scores = np.linspace(1.0, 0.01, n)  # the rare-class volumes score lowest: plain top-k never takes them
    quotas = class_quotas(counts, int(round(CLASS_SHARE * k)))
    assert sum(quotas.values()) == 6 and quotas == {2: 3, 1: 3}  # evenly split; remainders go rarest first
    assert class_quotas(_counts(4, []), 2) == {1: 2}  # a class predicted nowhere gets no share
    picks = stratified_picks(scores, counts, k, round_index=50, seed=0)
    assert len(picks) == k and len(set(picks)) == k
    assert {37, 38, 39} <= set(picks)  # the rare class's share, though its volumes score lowest
    top = [int(i) for i in np.argsort(-scores)[:k]]
    assert not {37, 38, 39} & set(top)


def test_the_perturbation_shrinks_over_rounds_and_is_seeded():
    assert noise_scale(0) == 1.0 and noise_scale(1) == 0.5 and noise_scale(3) == 0.25
    with pytest.raises(ValueError):
        noise_scale(-1)
    scores = np.linspace(1.0, 0.1, 200)
    spread = [np.std(perturbed_log_scores(scores, r, seed=3) - np.log(scores)) for r in (0, 1, 4)]
    assert spread[0] > spread[1] > spread[2]  # the Gumbel noise's scale: 1, 1/2, 1/5
    assert np.array_equal(perturbed_log_scores(scores, 2, seed=7), perturbed_log_scores(scores, 2, seed=7))
    assert not np.array_equal(perturbed_log_scores(scores, 2, seed=7), perturbed_log_scores(scores, 2, seed=8))
    counts = _counts(200, rare_cases=range(0, 200, 20))
    early = {tuple(stratified_picks(scores, counts, 6, 0, seed)) for seed in range(20)}
    late = {tuple(stratified_picks(scores, counts, 6, 200, seed)) for seed in range(20)}
    assert len(early) > len(late)  # early rounds explore, late rounds settle on the top scores


def _signal(case_id, entropy, class_voxels):
    return CaseSignals(
        case_id, dkd=0.0, asd=0.0, entropy=entropy, feature=np.zeros(2), class_voxels=list(class_voxels)
    )


def test_the_strategy_is_one_registry_entry_seeded_and_reads_the_round_from_the_labels():
    pool = [_signal(f"c{i}", 0.9 - 0.02 * i, [1000, 100, 5 if i == 30 else 0]) for i in range(31)]
    options = RankingOptions(strategy=Strategy.CLASS_STRATIFIED, k=3, seed=4)
    first = [r.case_id for r in rank(pool, [], options) if r.selected]
    assert first == [r.case_id for r in rank(pool, [], options) if r.selected]
    assert "c30" in first and len(set(first)) == 3
    labeled = [_signal(f"l{i}", 0.5, [1000, 100, 0]) for i in range(30)]  # ten rounds of 3 labels done
    scores = [s.entropy for s in pool]
    counts = np.array([s.class_voxels for s in pool])
    later = [r.case_id for r in rank(pool, labeled, options) if r.selected]
    assert later == [f"c{i}" for i in stratified_picks(scores, counts, 3, round_index=10, seed=4)]
    assert Strategy("clasp_pe") is Strategy.CLASS_STRATIFIED


def test_every_strategy_name_has_one_registry_entry():
    from asfda.query.strategies import REGISTRY

    assert set(REGISTRY) == set(Strategy) and Strategy.CLASS_STRATIFIED in REGISTRY


def test_the_signal_cache_keeps_the_per_class_counts_and_reads_older_entries_without_them():
    import io

    from asfda.scoring.cache import _pack, _unpack

    signal = _signal("c0", 0.5, [900, 90, 10])
    row = {"dkd": 0.0, "asd": 0.0, "entropy": 0.5, "foreground_fraction": 0.1, "knowledge_source": "norm_stats"}
    row["foreground_voxels"] = 100
    assert _unpack("c0", row, _pack(signal)).class_voxels == [900, 90, 10]
    stored = dict(np.load(io.BytesIO(_pack(signal))))
    del stored["class_voxels"]  # an entry written before the counts were kept
    older = io.BytesIO()
    np.savez(older, **stored)
    assert _unpack("c0", row, older.getvalue()).class_voxels == []
    binary = _signal("c1", 0.5, [])
    binary.class_entropy, binary.foreground_voxels = [0.1, 0.4], 100
    ranked = rank([binary, _signal("c2", 0.4, [10, 5])], [], RankingOptions(strategy=Strategy.CLASS_STRATIFIED, k=1))
    assert len([r for r in ranked if r.selected]) == 1  # a cached binary signal still ranks
