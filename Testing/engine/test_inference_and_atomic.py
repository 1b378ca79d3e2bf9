import numpy as np
import pytest
import torch
from asfda.core.atomic import atomic_path, atomic_write_text
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from engine_helpers import tiny_config


def test_any_volume_size_runs_in_fixed_size_patches():
    config = tiny_config()
    config.roi_size = [16, 16, 16]
    network = build_network(config)
    seen = []
    network.register_forward_pre_hook(lambda _m, inputs: seen.append(tuple(inputs[0].shape[2:])))
    predictor = Predictor(network, config)
    seen.clear()
    result = predictor.forward(torch.randn(1, 40, 33, 21))
    assert result.probs.shape == (2, 40, 33, 21)
    assert torch.allclose(result.probs.sum(0), torch.ones(40, 33, 21), atol=1e-5)
    assert set(seen) == {(16, 16, 16)} and len(seen) > 1
    # UNet's coarsest, widest output is its skip concatenation there: bottom (16) + encoder (8) channels.
    assert result.feature.shape == (24,) and len(result.layer_means) == len(result.layer_vars) > 0


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["state.json"])
