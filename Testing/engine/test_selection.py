import numpy as np
import pytest
from asfda.adapt.reliability import ReliabilityOptions, select_reliable
from asfda.query.selection import SelectionRule, k_center_greedy, rank_normalize, select
from asfda.query.signals import CaseSignals
from asfda.query.strategies import RankingOptions, Strategy, rank


def _pool_with_duplicates(seed=0):
    """Five near-identical, highly informative volumes plus three spread-out groups."""
    rng = np.random.default_rng(seed)
    duplicates = rng.normal([5, 5], 0.01, (5, 2))
    groups = np.vstack([rng.normal(c, 0.3, (5, 2)) for c in ([0, 0], [-5, 5], [0, -6])])
    embedding = np.vstack([duplicates, groups])
    info = np.concatenate([np.full(5, 0.95) + rng.uniform(0, 0.01, 5), rng.uniform(0.3, 0.8, 15)])
    return info, embedding


def test_plain_top_k_picks_the_near_duplicates():
    info, emb = _pool_with_duplicates()
    picks = select(info, emb, None, 3, SelectionRule.TOP_K)
    assert set(picks) <= set(range(5))


@pytest.mark.parametrize(
    "rule",
    [SelectionRule.GREEDY_DISTANCE, SelectionRule.CLUSTER_COVERAGE, SelectionRule.DENSITY, SelectionRule.COMPLEMENTARY],
)
def test_diversity_aware_rules_do_not_pick_near_duplicates(rule):
    info, emb = _pool_with_duplicates()
    picks = select(info, emb, None, 4, rule, reliability=np.zeros(len(info)))
    assert len(picks) == len(set(picks)) == 4
    assert sum(p < 5 for p in picks) <= 1
    distances = [np.linalg.norm(emb[a] - emb[b]) for i, a in enumerate(picks) for b in picks[i + 1 :]]
    assert min(distances) > 1.0


def test_cluster_coverage_skips_groups_that_labels_already_cover():
    info, emb = _pool_with_duplicates()
    labeled = np.array([[5.0, 5.0], [0.0, 0.0]])
    picks = select(info, emb, labeled, 2, SelectionRule.CLUSTER_COVERAGE)
    groups = {0 if p < 5 else 1 + (p - 5) // 5 for p in picks}
    assert groups == {2, 3}  # the two groups no label speaks for


def test_cold_start_medoid_takes_the_most_central_volume_of_each_cluster():
    info, emb = _pool_with_duplicates()
    picks = select(info, emb, None, 4, SelectionRule.CLUSTER_COVERAGE, cold_start_medoid=True)
    groups = sorted(0 if p < 5 else 1 + (p - 5) // 5 for p in picks)
    assert groups == [0, 1, 2, 3]


def test_core_set_starts_from_labels_and_spreads_out():
    _, emb = _pool_with_duplicates()
    picks = k_center_greedy(emb, np.array([[5.0, 5.0]]), 3)
    assert all(p >= 5 for p in picks)
    assert len({(p - 5) // 5 for p in picks}) == 3


def test_rank_normalize_is_order_preserving_in_unit_interval():
    values = np.array([3.0, -1.0, 10.0, 0.5])
    ranks = rank_normalize(values)
    assert list(np.argsort(ranks)) == list(np.argsort(values)) and ranks.max() == 1.0 and ranks.min() > 0


def _signal(case_id, dkd, asd, feature):
    f = np.asarray(feature, dtype=float)
    return CaseSignals(case_id, dkd, asd, entropy=asd, feature=f, layer_means=[f], layer_vars=[np.ones_like(f)])


def test_rank_orders_the_whole_pool_with_picks_first():
    rng = np.random.default_rng(1)
    pool = [_signal(f"c{i}", rng.uniform(), rng.uniform(), rng.normal(size=4)) for i in range(10)]
    for strategy in Strategy:
        if strategy == Strategy.MC_DROPOUT:
            for s in pool:
                s.epistemic = rng.uniform()
        ranked = rank(pool, [], RankingOptions(strategy=strategy, k=3))
        assert [r.rank for r in ranked] == list(range(1, 11))
        assert sorted(r.case_id for r in ranked) == sorted(s.case_id for s in pool)
        assert [r.selected for r in ranked] == [True] * 3 + [False] * 7


def test_mc_dropout_ranking_without_epistemic_scores_is_an_error():
    pool = [_signal("a", 1, 1, [0, 1]), _signal("b", 1, 1, [1, 0])]
    with pytest.raises(ValueError, match="epistemic"):
        rank(pool, [], RankingOptions(strategy=Strategy.MC_DROPOUT, k=1))


def test_reliability_filter_excludes_uncertain_and_far_away_volumes():
    labeled = [_signal("L1", 0.1, 0.1, [0.0, 0.0, 0.0]), _signal("L2", 0.1, 0.1, [0.2, 0.0, 0.1])]
    candidates = [
        _signal("near_confident_1", 0.1, 0.05, [0.1, 0.1, 0.0]),
        _signal("near_confident_2", 0.1, 0.08, [0.0, 0.2, 0.1]),
        _signal("near_uncertain", 0.1, 0.9, [0.1, 0.0, 0.0]),
        _signal("far_confident", 0.1, 0.06, [9.0, 9.0, 9.0]),
        _signal("far_uncertain", 0.1, 0.8, [-9.0, 9.0, 0.0]),
        _signal("mid", 0.1, 0.5, [1.0, 1.0, 1.0]),
    ]
    chosen = [c.case_id for c in select_reliable(candidates, labeled, ReliabilityOptions())]
    assert "near_uncertain" not in chosen and "far_confident" not in chosen and "far_uncertain" not in chosen
    assert chosen[:2] == ["near_confident_1", "near_confident_2"] or set(chosen[:2]) == {
        "near_confident_1",
        "near_confident_2",
    }
