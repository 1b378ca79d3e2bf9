"""The device-side scoring pieces give the same numbers as the reference CPU libraries they replace."""

import numpy as np
import pytest
import torch
from asfda.models.config import ModelConfig
from asfda.models.inference import Predictor, norm_layers
from asfda.models.networks import build_network
from asfda.query.asd import dilate, otsu_threshold
from engine_helpers import blob, tiny_config
from scipy import ndimage
from skimage.filters import threshold_otsu


def test_dilation_matches_scipy_cross_dilation():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(17, 13, 11)) > 0.97
    mask[0, 0, 0] = mask[-1, -1, -1] = True  # borders behave as scipy's (outside is background)
    expected = ndimage.binary_dilation(mask, iterations=2)
    assert np.array_equal(dilate(torch.as_tensor(mask), 2).numpy(), expected)


def test_otsu_from_a_device_histogram_matches_skimage():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.beta(2, 9, 5000), rng.beta(9, 2, 3000)]).astype(np.float32)
    assert otsu_threshold(torch.as_tensor(values)) == pytest.approx(threshold_otsu(values), abs=1e-3)


def _direct_stats(network, layers, image):
    """Channel statistics of every layer's input over the whole volume, taken the slow, obvious way."""
    seen = {name: [] for name in layers}
    handles = [
        layer.register_forward_pre_hook(lambda _m, inputs, name=name: seen[name].append(inputs[0].detach().double()))
        for name, layer in layers.items()
    ]
    with torch.no_grad():
        network(image[None])
    for handle in handles:
        handle.remove()
    stats = {}
    for name, tensors in seen.items():
        axis = -1 if isinstance(layers[name], torch.nn.LayerNorm) else 1
        x = torch.cat([t.movedim(axis, -1).reshape(-1, t.shape[axis]) for t in tensors])
        stats[name] = (x.mean(0).numpy(), x.var(0, unbiased=False).numpy())
    return stats


@pytest.mark.parametrize("network", ["UNet", "SwinUNETR"])
def test_probe_pools_every_norm_layer_over_windows_exactly(network):
    if network == "SwinUNETR":
        config = ModelConfig(network="SwinUNETR", network_args={"feature_size": 12}, roi_size=[64, 64, 64])
        shape = (64, 64, 64)  # one window: the direct statistics see the same voxels as the probe
    else:
        config = tiny_config()
        config.roi_size = [24, 24, 24]
        shape = (24, 24, 24)
    torch.manual_seed(0)
    net = build_network(config).eval()
    _, image = blob(3, shape=shape)
    image = torch.as_tensor(image)[None]
    result = Predictor(net, config).forward(image)
    layers = dict(norm_layers(net))
    assert result.layer_names == list(layers)  # every norm layer, in module order
    kinds = {type(m).__name__ for m in layers.values()}
    assert ("LayerNorm" in kinds) == (network == "SwinUNETR")
    expected = _direct_stats(net, layers, image)
    for name, mean, var in zip(result.layer_names, result.layer_means, result.layer_vars):
        exp_mean, exp_var = expected[name]
        np.testing.assert_allclose(mean, exp_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var, np.maximum(exp_var, 1e-8), rtol=1e-3, atol=1e-6)


def test_probe_merges_windows_like_one_pass():
    """Several overlapping windows: merged moments equal the moments of all window voxels together."""
    config = tiny_config()
    config.roi_size, config.sw_overlap = [16, 16, 16], 0.5
    torch.manual_seed(0)
    net = build_network(config).eval()
    _, image = blob(4, shape=(24, 24, 24))
    image = torch.as_tensor(image)[None]
    predictor = Predictor(net, config)  # before the hook: its set-up pass must not count
    name, layer = norm_layers(net)[0]
    seen = []
    handle = layer.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach().double()))
    result = predictor.forward(image)
    handle.remove()
    x = torch.cat([t.movedim(1, -1).reshape(-1, t.shape[1]) for t in seen])
    assert len(seen) > 1
    np.testing.assert_allclose(result.layer_means[0], x.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.layer_vars[0], x.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-7)


def test_streamed_mc_dropout_is_zero_without_disagreement_and_seeded():
    """BALD is 0 for one pass or for passes that agree (p=0), positive when dropout makes them disagree, and a
    seed gives the same figure twice (rank results must not move between runs)."""
    config = tiny_config()
    torch.manual_seed(0)
    predictor = Predictor(build_network(config), config)
    _, image = blob(5)
    image = torch.as_tensor(image)[None]
    assert predictor.mc_dropout_epistemic(image, 1, seed=7) == pytest.approx(0.0, abs=1e-7)
    assert predictor.mc_dropout_epistemic(image, 3, p=0.0, seed=7) == pytest.approx(0.0, abs=1e-7)
    noisy = predictor.mc_dropout_epistemic(image, 3, p=0.5, seed=7)
    assert noisy > 0
    assert predictor.mc_dropout_epistemic(image, 3, p=0.5, seed=7) == pytest.approx(noisy, rel=1e-6)
    assert predictor.mc_dropout_epistemic(image, 3, p=0.5, seed=8) != pytest.approx(noisy, rel=1e-6)


def test_predicted_class_matches_argmax_with_ties_to_the_first_class():
    from asfda.models.voxel_maps import predicted_class

    probs = torch.softmax(torch.randn(4, 9, 8, 7), dim=0)
    probs[:, 0, 0, 0] = torch.tensor([0.4, 0.4, 0.1, 0.1])  # a tie: argmax keeps the first
    assert torch.equal(predicted_class(probs), torch.argmax(probs, dim=0))


def test_pooling_dilation_used_on_accelerators_matches_scipy():
    """The max-pool path runs on GPUs; it is checked here on the CPU against scipy's cross dilation."""
    from asfda.query.asd import dilate_by_pooling

    rng = np.random.default_rng(2)
    mask = rng.uniform(size=(15, 12, 10)) > 0.96
    mask[0, 0, 0] = mask[-1, -1, -1] = True
    expected = ndimage.binary_dilation(mask, iterations=2)
    assert np.array_equal(dilate_by_pooling(torch.as_tensor(mask), 2).numpy(), expected)
