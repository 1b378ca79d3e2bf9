"""The baselines recent 3D active-learning studies found hard to beat, and the hospital-composed pool."""

from __future__ import annotations

import numpy as np
import torch
from asfda.bench.dataset import RARE_SEVERITY, ROUTINE_SEVERITY, pool_cohort, target_cohort
from asfda.bench.settings import subgroups
from asfda.query.balanced import class_balanced_entropy, class_entropies, foreground_weighted_picks
from asfda.query.signals import CaseSignals
from asfda.query.strategies import RankingOptions, Strategy, rank
from asfda.synth.anatomy import Anatomy


def _signal(case_id, foreground=0.0, class_entropy=(), entropy=0.0):
    return CaseSignals(
        case_id,
        dkd=0.0,
        asd=0.0,
        entropy=entropy,
        feature=np.zeros(2),
        foreground_fraction=foreground,
        class_entropy=list(class_entropy),
    )


def test_foreground_random_never_picks_a_volume_the_model_sees_no_anatomy_in_and_follows_its_seed():
    pool = [_signal(f"c{i}", foreground=0.0 if i % 2 else 0.1 + 0.05 * i) for i in range(10)]
    options = RankingOptions(strategy=Strategy.FOREGROUND_RANDOM, k=3, seed=5)
    picks = [r.case_id for r in rank(pool, [], options) if r.selected]
    assert len(set(picks)) == 3 and all(int(c[1:]) % 2 == 0 for c in picks)
    assert picks == [r.case_id for r in rank(pool, [], options) if r.selected]
    draws = [tuple(foreground_weighted_picks(np.array([0.9, 0.1, 0.0]), 1, s)) for s in range(200)]
    assert draws.count((0,)) > 150 and (2,) not in draws  # proportional to the predicted foreground
    assert len(set(foreground_weighted_picks(np.zeros(4), 2, 0))) == 2  # no foreground anywhere: uniform


def test_class_balanced_entropy_weighs_a_small_uncertain_organ_like_the_whole_background():
    probs = torch.zeros(2, 10, 10, 10)
    probs[0] = 0.999
    probs[1] = 0.001
    probs[:, :2, :2, :2] = torch.tensor([0.45, 0.55])[:, None, None, None]  # a small, uncertain organ
    entropy = -(probs.clamp_min(1e-8) * probs.clamp_min(1e-8).log()).sum(0) / np.log(2)
    per_class = class_entropies(probs, entropy)
    assert per_class[1] > 0.95 and per_class[0] < 0.02
    assert class_balanced_entropy(per_class) > 10 * float(entropy.mean())  # the plain mean hides the organ
    nothing = torch.stack([torch.ones(4, 4, 4), torch.zeros(4, 4, 4)])
    assert class_entropies(nothing, torch.zeros(4, 4, 4))[1] == 1.0  # an organ predicted nowhere
    pool = [_signal("calm", class_entropy=[0.01, 0.1]), _signal("organ", class_entropy=[0.01, 0.9])]
    ranked = rank(pool, [], RankingOptions(strategy=Strategy.BALANCED_ENTROPY, k=1))
    assert [r.case_id for r in ranked if r.selected] == ["organ"]


def _anatomy():
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    label = (((grid - 8) / 5.0) ** 2).sum(-1) <= 1
    image = np.where(label, 0.9, 0.3).astype(np.float32)
    return Anatomy("blob", image, label.astype(np.uint8), np.diag([4.0, 4.0, 4.0, 1.0]), {"background": 0, "brain": 1})


def test_a_hospital_pool_has_one_routine_protocol_and_a_rare_one_in_a_tenth_of_it():
    anatomy = _anatomy()
    pool = pool_cohort([anatomy], 20, 2026, 0, rare_share=0.1)
    rare = [c for c, p in pool.protocol.items() if p == "rare"]
    assert len(pool.protocol) == 20 and len(rare) == 2
    for case, protocol in pool.protocol.items():
        low, high = RARE_SEVERITY if protocol == "rare" else ROUTINE_SEVERITY
        assert low <= pool.severity[case] <= high
    test = target_cohort([anatomy], 8, "test", 2026, rare_share=0.25)
    assert sum(p == "rare" for p in test.protocol.values()) == 2  # the evaluation splits hold more rare cases
    uniform = pool_cohort([anatomy], 5, 2026, 0)
    assert uniform.protocol == {}
    assert subgroups("brain", "hospital") == ("test_by_protocol", "protocol")
