"""DKD you can trust (issue 18): the layer's eps, a robust channel aggregate, layer names matched through
wrapper prefixes with a share below which the statistics are not used, and a batch-norm source frozen at import."""

import logging

import numpy as np
import pytest
import torch
from asfda.models.inference import ForwardResult, Predictor, norm_layers
from asfda.models.networks import build_network
from asfda.models.reference_stats import reference_stats_of
from asfda.models.store import ModelStore, ReferenceStats
from asfda.query.dkd import KnowledgeSource, knowledge_reference, layer_gap, norm_stats_gap
from asfda.query.signals import compute_signals
from engine_helpers import blob, shifted, tiny_config


def _old_gap(mean_x, var_x, mean_s, var_s) -> float:
    """The formula before the fix: 1e-8 floor, plain mean over channels (kept here to show the difference)."""
    var_x, var_s = np.maximum(var_x, 1e-8), np.maximum(var_s, 1e-8)
    return float((0.5 * (np.log(var_s / var_x) + (var_x + (mean_x - mean_s) ** 2) / var_s - 1.0)).mean())


def test_a_near_constant_channel_no_longer_carries_the_layer():
    rng = np.random.default_rng(0)
    mean_s, var_s = rng.normal(size=16), rng.uniform(0.5, 2.0, size=16)
    mean_x, var_x = mean_s + 0.05, var_s * 1.1  # a small, real shift on every channel
    honest = layer_gap(mean_x, var_x, mean_s, var_s)
    # one channel the source saw as constant (a dead ReLU upstream), barely alive on the target
    mean_s[3], var_s[3], mean_x[3], var_x[3] = 0.0, 1e-9, 1e-3, 1e-7
    assert _old_gap(mean_x, var_x, mean_s, var_s) > 100 * honest  # before: that one channel is the layer's gap
    assert layer_gap(mean_x, var_x, mean_s, var_s) == pytest.approx(honest, rel=0.5)


def test_the_layer_eps_floors_both_variances():
    # With the network's eps (1e-3 here) a variance of 1e-9 against 1e-6 is a tiny difference, as the layer sees it
    assert layer_gap(np.zeros(4), np.full(4, 1e-9), np.zeros(4), np.full(4, 1e-6), eps=1e-3) < 1e-3
    assert layer_gap(np.zeros(4), np.full(4, 1e-9), np.zeros(4), np.full(4, 1e-6), eps=1e-12) > 1.0


def _bn_predictor():
    config = tiny_config()
    torch.manual_seed(0)
    network = build_network(config)
    with torch.no_grad():  # source running statistics that differ from a fresh network's
        for _, m in norm_layers(network):
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return Predictor(network.eval(), config)


def _renamed(stats: ReferenceStats, prefix: str, keep: float = 1.0) -> ReferenceStats:
    n = int(round(len(stats.layer_names) * keep))
    return ReferenceStats(
        [prefix + name for name in stats.layer_names[:n]], stats.means[:n], stats.variances[:n], stats.volumes
    )


def test_wrapper_prefixes_do_not_break_layer_matching():
    predictor = _bn_predictor()
    images = {f"c{i}": torch.as_tensor(blob(i)[1])[None] for i in range(2)}
    reference = reference_stats_of(predictor, images.items())
    plain = compute_signals(predictor, images, reference_stats=reference)
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        wrapped = compute_signals(predictor, images, reference_stats=_renamed(reference, prefix))
        assert [s.knowledge_source for s in wrapped] == [KnowledgeSource.REFERENCE_STATS.value] * 2
        assert [s.dkd for s in wrapped] == pytest.approx([s.dkd for s in plain])
        assert all(s.knowledge_matched == 1.0 for s in wrapped)


def test_statistics_that_name_too_few_layers_are_not_used_and_the_ranking_says_so(caplog):
    predictor = _bn_predictor()
    images = {f"c{i}": torch.as_tensor(shifted(blob(i)[1], blob(i)[0], i))[None] for i in range(3)}
    reference = reference_stats_of(predictor, images.items())
    half = ReferenceStats(
        [f"renamed.{n}" if i % 2 else n for i, n in enumerate(reference.layer_names)],
        reference.means,
        reference.variances,
    )
    with caplog.at_level(logging.WARNING, logger="asfda.query.dkd"):
        chosen = knowledge_reference(predictor.network, None, None, half)
    # the next source the model has (its batch-norm buffers) is used, never NaN under "reference_stats"
    assert chosen.source == KnowledgeSource.NORM_STATS
    assert "reference_stats names only" in chosen.warning and "not used" in chosen.warning
    assert "reference_stats names only" in caplog.text
    signals = compute_signals(predictor, images, reference_stats=half)
    assert all(s.knowledge_source == KnowledgeSource.NORM_STATS.value for s in signals)
    assert all(np.isfinite(s.dkd) for s in signals)


def test_a_gap_over_no_matched_layer_is_never_reported_under_a_statistics_label():
    result = ForwardResult(torch.zeros(2, 1, 1, 1), np.zeros(3), [np.zeros(2)], [np.ones(2)], ["a"])
    assert np.isnan(norm_stats_gap(result, {"b": (np.zeros(2), np.ones(2))}))  # the raw gap cannot know...
    network = build_network(tiny_config())
    nothing = ReferenceStats(["not.a.layer"], [np.zeros(2)], [np.ones(2)])
    chosen = knowledge_reference(network, None, KnowledgeSource.REFERENCE_STATS, nothing)
    assert chosen.source != KnowledgeSource.REFERENCE_STATS  # ...so the reference never picks such statistics


def test_a_batch_norm_model_keeps_its_import_time_statistics_after_adaptation(tmp_path):
    predictor = _bn_predictor()
    store = ModelStore(tmp_path / "models")
    v1 = store.publish(predictor.network, predictor.config, parent=None)
    frozen = store.load(v1).reference_stats
    assert frozen is not None and frozen.origin == "running_stats"
    adapted = build_network(predictor.config)
    adapted.load_state_dict(predictor.network.state_dict())
    with torch.no_grad():  # what a round of fine-tuning does to the buffers
        for _, m in norm_layers(adapted):
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.add_(1.0)
    v2 = store.publish(adapted, predictor.config, parent=v1)
    loaded = store.load(v2)
    chosen = knowledge_reference(loaded.network, None, None, loaded.reference_stats)
    assert chosen.source == KnowledgeSource.NORM_STATS  # named for what it is: the source's batch-norm statistics
    name = frozen.layer_names[0]
    np.testing.assert_allclose(chosen.layer_stats[name][0], frozen.means[0])  # from import, not the new buffers
    asked = knowledge_reference(loaded.network, None, KnowledgeSource.NORM_STATS, loaded.reference_stats)
    np.testing.assert_allclose(asked.layer_stats[name][0], frozen.means[0])
