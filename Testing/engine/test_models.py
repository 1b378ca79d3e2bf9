import json

import numpy as np
import pytest
import torch
from asfda.core.errors import ConfigError, ModelNotFound, WeightsMismatch
from asfda.models.config import ModelConfig
from asfda.models.networks import build_network, find_feature_module
from asfda.models.store import ModelStore
from asfda.models.weights import load_weights
from engine_helpers import tiny_config


def _swin_config(**extra) -> ModelConfig:
    return ModelConfig(
        network="SwinUNETR",
        network_args={"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], **extra},
        roi_size=[64, 64, 64],
    ).validate()


@pytest.mark.parametrize("name", ["UNet", "SegResNet", "SwinUNETR"])
def test_networks_build_from_config_and_expose_the_deepest_encoder_feature(name):
    if name == "SwinUNETR":
        config = _swin_config()  # Swin's coarsest grid is 1/32: 64 keeps two voxels for instance norm
        expected = "encoder10"
    else:
        config = ModelConfig(network=name, roi_size=[32, 32, 32]).validate()
        expected = {"UNet": None, "SegResNet": "down_layers.3"}[name]
    network = build_network(config)
    size = config.roi_size
    with torch.no_grad():
        out = network.eval()(torch.zeros(1, 1, *size))
    assert out.shape == (1, 2, *size)
    found = find_feature_module(network, config)
    if expected:
        assert found == expected
    else:  # UNet: the bottom block, nested inside the skip connections
        assert "submodule" in found and dict(network.named_modules())[found] is not None


def test_config_rejects_bad_values_with_clear_messages(tmp_path):
    with pytest.raises(ConfigError, match="network 'VNetX'"):
        ModelConfig(network="VNetX").validate()
    with pytest.raises(ConfigError, match="label values must be 0..C-1"):
        ModelConfig(labels={"background": 0, "liver": 2}).validate()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"network": "UNet", "lables": {}}))
    with pytest.raises(ConfigError, match="unknown model config keys: lables"):
        ModelConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read model config"):
        ModelConfig.load(path)


def test_plain_state_dict_and_checkpoint_dict_load_exactly(tmp_path):
    config = tiny_config()
    source = build_network(config)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ckpt.pt"
    )
    for name, layout in (("plain.pt", "state_dict"), ("ckpt.pt", "checkpoint")):
        target = build_network(config)
        report = load_weights(target, tmp_path / name)
        assert report.layout == layout and not report.fresh and not report.ignored
        for a, b in zip(source.state_dict().values(), target.state_dict().values()):
            assert torch.equal(a, b)


def test_swin_self_supervised_encoder_layout_loads_with_a_fresh_decoder(tmp_path):
    config = _swin_config()
    pretrained = build_network(config)
    ssl = {f"module.{k}": v for k, v in pretrained.swinViT.state_dict().items()}
    ssl["module.rotation_head.weight"] = torch.zeros(4, 192)
    ssl["module.contrastive_head.weight"] = torch.zeros(512, 192)
    torch.save({"state_dict": ssl, "epoch": 100}, tmp_path / "model_swinvit.pt")
    torch.manual_seed(123)
    target = build_network(config)
    decoder_before = target.decoder1.state_dict()["conv_block.conv1.conv.weight"].clone()
    report = load_weights(target, tmp_path / "model_swinvit.pt")
    assert report.layout == "swin_ssl"
    assert report.loaded == len(pretrained.swinViT.state_dict())
    assert sorted(report.ignored) == ["contrastive_head.weight", "rotation_head.weight"]
    assert report.fresh and all(not k.startswith("swinViT.") for k in report.fresh)
    for key, value in pretrained.swinViT.state_dict().items():
        assert torch.equal(target.swinViT.state_dict()[key], value)
    assert torch.equal(target.decoder1.state_dict()["conv_block.conv1.conv.weight"], decoder_before)


def test_incomplete_swin_encoder_is_refused(tmp_path):
    pretrained = build_network(_swin_config())
    ssl = {f"module.{k}": v for k, v in pretrained.swinViT.state_dict().items() if not k.startswith("layers4")}
    torch.save({"state_dict": ssl}, tmp_path / "partial.pt")
    with pytest.raises(WeightsMismatch, match="missing .*swinViT.layers4"):
        load_weights(build_network(_swin_config()), tmp_path / "partial.pt")


def test_mismatched_checkpoint_is_refused_and_the_network_is_untouched(tmp_path):
    other = tiny_config()
    other.network_args["channels"] = [8, 16, 32]
    torch.save(build_network(other).state_dict(), tmp_path / "other.pt")
    target = build_network(tiny_config())
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsMismatch, match="shape mismatches"):
        load_weights(target, tmp_path / "other.pt")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    state = dict(build_network(tiny_config()).state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state[next(iter(state))]
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(WeightsMismatch, match=r"1 missing .*1 unexpected \(extra.weight\)"):
        load_weights(target, tmp_path / "keys.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsMismatch, match="junk.pt: cannot read weights"):
        load_weights(target, tmp_path / "junk.pt")


def test_model_versions_publish_activate_and_roll_back(tmp_path):
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelNotFound, match="no active model"):
        store.load()
    config = tiny_config()
    first = build_network(config)
    v1 = store.publish(first, config, parent=None, metrics={"dice": 0.5})
    second = build_network(config)
    with torch.no_grad():
        next(second.parameters()).add_(1.0)
    v2 = store.publish(second, config, parent=v1, metrics={"dice": 0.7})
    assert (v1, v2) == ("v0001", "v0002") and store.active_version() == v2
    assert [v.parent for v in store.versions()] == [None, v1]
    loaded = store.load()
    assert torch.equal(next(loaded.network.parameters()), next(second.parameters()))
    store.activate(v1)
    assert store.load().version == v1
    assert torch.equal(next(store.load().network.parameters()), next(first.parameters()))
    with pytest.raises(ModelNotFound):
        store.activate("v0099")
    with pytest.raises(ModelNotFound):
        store.activate("../v0001")
    # A writer killed mid-publish leaves only a staging folder: never a version, never the pointer.
    (tmp_path / "models" / ".staging-dead").mkdir()
    (tmp_path / "models" / ".staging-dead" / "weights.pt").write_bytes(b"half")
    assert [v.version for v in store.versions()] == [v1, v2] and store.active_version() == v1
    store.cleanup_staging()
    assert not list((tmp_path / "models").glob(".staging-*"))
    assert np.isfinite(store.versions()[1].metrics["dice"])
