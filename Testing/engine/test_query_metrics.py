import numpy as np
import pytest
import torch
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.query.asd import ForegroundRule, anatomical_segmentation_difficulty
from asfda.query.dkd import KnowledgeSource
from asfda.query.signals import compute_signals
from engine_helpers import SHAPE, blob, shifted, tiny_config


def _network_with_source_stats(config, seeds=range(6)):
    """A network whose batch-norm running statistics were gathered on source-like volumes only."""
    torch.manual_seed(0)
    network = build_network(config)
    for m in network.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: the stats are exactly the source statistics
    network.train()
    with torch.no_grad():
        for seed in seeds:
            _, image = blob(seed)
            network(torch.as_tensor(image)[None, None])
    return network.eval()


def test_dkd_is_larger_for_volumes_shifted_from_the_source_statistics():
    config = tiny_config()
    predictor = Predictor(_network_with_source_stats(config), config)
    images = {}
    for seed in (100, 101, 102):
        label, image = blob(seed)
        images[f"source_{seed}"] = torch.as_tensor(image)[None]
        images[f"shifted_{seed}"] = torch.as_tensor(shifted(image, label, seed))[None]
    signals = {s.case_id: s for s in compute_signals(predictor, images)}
    assert all(s.knowledge_source == KnowledgeSource.NORM_STATS.value for s in signals.values())
    for seed in (100, 101, 102):
        assert signals[f"shifted_{seed}"].dkd > 3 * signals[f"source_{seed}"].dkd
    # The gap grows with the shift's strength.
    label, image = blob(103)
    graded = {f"s{int(10 * s)}": torch.as_tensor(shifted(image, label, 7, s))[None] for s in (0.2, 0.6, 1.0)}
    gaps = [s.dkd for s in compute_signals(predictor, graded)]
    assert gaps[0] < gaps[1] < gaps[2]


def test_dkd_falls_back_to_feature_prior_then_pool_mean_without_norm_statistics():
    config = tiny_config()
    config.network_args["norm"] = "instance"
    predictor = Predictor(build_network(config), config)
    label, image = blob(1)
    images = {"a": torch.as_tensor(image)[None], "b": torch.as_tensor(shifted(image, label, 1))[None]}
    pooled = compute_signals(predictor, images)
    assert {s.knowledge_source for s in pooled} == {KnowledgeSource.POOL_MEAN.value}
    assert all(np.isfinite(s.dkd) for s in pooled)
    from asfda.models.store import FeaturePrior

    feature = pooled[0].feature
    prior = FeaturePrior(mean=feature, var=np.ones_like(feature))
    with_prior = compute_signals(predictor, images, feature_prior=prior)
    assert {s.knowledge_source for s in with_prior} == {KnowledgeSource.FEATURE_PRIOR.value}
    assert with_prior[0].dkd == pytest.approx(0.0, abs=1e-9) and with_prior[1].dkd > 0


def _probs(fg: np.ndarray) -> torch.Tensor:
    fg = torch.as_tensor(fg, dtype=torch.float32)
    return torch.stack([1 - fg, fg])


def _organ_probs(inside: float, background: float = 0.01, uncertain_background: float = None):
    label, _ = blob(3)
    fg = np.where(label > 0, inside, background)
    if uncertain_background is not None:
        corner = np.zeros(SHAPE, bool)
        corner[:6, :6, :] = True
        fg = np.where(corner & (label == 0), uncertain_background, fg)
    return _probs(fg)


@pytest.mark.parametrize("rule", [ForegroundRule.OTSU, ForegroundRule.DILATED_ARGMAX])
def test_asd_grows_with_foreground_uncertainty(rule):
    confident = anatomical_segmentation_difficulty(_organ_probs(0.99), rule)
    unsure = anatomical_segmentation_difficulty(_organ_probs(0.7), rule)
    assert unsure > confident + 0.2


def test_asd_ignores_uncertainty_in_the_background():
    clean = anatomical_segmentation_difficulty(_organ_probs(0.99))
    noisy_background = anatomical_segmentation_difficulty(_organ_probs(0.99, uncertain_background=0.3))
    assert noisy_background == pytest.approx(clean, abs=0.02)
    whole = ForegroundRule.WHOLE_VOLUME
    assert anatomical_segmentation_difficulty(_organ_probs(0.99, uncertain_background=0.3), whole) > (
        anatomical_segmentation_difficulty(_organ_probs(0.99), whole) + 0.05
    )


def test_asd_is_maximal_when_the_model_sees_no_anatomy():
    assert anatomical_segmentation_difficulty(_probs(np.zeros(SHAPE))) == 1.0


def test_one_forward_pass_serves_dkd_and_asd(monkeypatch):
    config = tiny_config()
    predictor = Predictor(_network_with_source_stats(config), config)
    calls = []
    original = predictor.network.forward
    monkeypatch.setattr(predictor.network, "forward", lambda x: calls.append(1) or original(x))
    images = {f"c{i}": torch.as_tensor(blob(i)[1])[None] for i in range(3)}
    compute_signals(predictor, images)
    assert len(calls) == 3  # one network call per volume (one sliding window each at this size)


def test_mc_dropout_epistemic_grows_with_disagreement_between_passes():
    config = tiny_config()
    predictor = Predictor(_network_with_source_stats(config), config)
    image = torch.as_tensor(blob(5)[1])[None]
    mild = predictor.mc_dropout_epistemic(image, samples=4, p=0.05)
    strong = predictor.mc_dropout_epistemic(image, samples=4, p=0.6)
    assert strong > mild > 0
