"""`asfda bench activation` runs the product's path in both orders and prints the time to activation."""

import pytest
from asfda.bench.cost.activation import ActivationSettings, format_activation, run_activation


def test_the_model_first_order_is_active_before_its_verdict_and_the_old_order_after(tmp_path):
    result = run_activation(ActivationSettings(volumes=6, shape=(16, 16, 16), labels=3, steps=2), tmp_path)
    first, old = result["model first"], result["verdict first"]
    assert first["activated"] and old["activated"]
    assert first["verdict_s"] > 0 and old["verdict_s"] == 0  # the verdict came after activation, or before
    assert first["verdict"] in ("worse", "not worse") and old["verdict"] in ("worse", "not worse")
    # the old order trained three fold models before the published one became active; the new order none (at this
    # tiny size wall-clock ratios are noise, the trainings before activation are not)
    assert first["trained_before_active_s"] == pytest.approx(first["published_training_s"])
    assert old["trained_before_active_s"] > 2 * old["published_training_s"]
    table = format_activation(result)
    assert "| model first |" in table and "| verdict first |" in table
