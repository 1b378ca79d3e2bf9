"""The benchmark's SwinUNETR source model (DKD from reference statistics) and its sharded runs."""

from __future__ import annotations

import threading

import pytest
from asfda.bench import labels as labels_module
from asfda.bench.context import BenchContext
from asfda.bench.plan import _arm, code_pick
from asfda.bench.runner import execute
from asfda.bench.settings import BenchSettings, tiny_settings
from asfda.bench.sources import fetch_all
from asfda.bench.store import ResultStore


@pytest.fixture(scope="module")
def mni152_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("data")
    records = fetch_all(cache, names=["mni152"], log=lambda _: None)
    assert [r.status for r in records if r.name == "mni152"] == ["ready"]
    return cache


def test_unet_fingerprints_are_unchanged_by_the_source_network_field():
    # Runs cached before the field existed must still be found (pinned: the default and the hospital pool).
    assert BenchSettings().fingerprint() == "309b9860af"
    assert BenchSettings(pool_mix="hospital").fingerprint() == "8a3b13f37b"
    assert BenchSettings(source_network="swinunetr").fingerprint() != BenchSettings().fingerprint()


def test_swin_source_model_records_reference_statistics_and_dkd_uses_them(mni152_cache, tmp_path):
    settings = tiny_settings()
    settings.source_network, settings.n_reference_volumes = "swinunetr", 2
    ctx = BenchContext(settings, mni152_cache, tmp_path, log=lambda _: None)
    assert ctx.config.network == "SwinUNETR" and ctx.config.roi_size == [32, 32, 32]
    assert ctx.reference is not None and len(ctx.reference.volumes) == 2
    names = ctx.reference.layer_names
    assert any(n.startswith("swinViT") and ".norm1" in n for n in names)  # Swin layer norms (channels last)
    assert any(n.startswith("encoder1.") for n in names)  # the convolutional blocks' group norms
    row = execute(ctx, _arm("asfda", 1, True, 0, code_pick()))
    assert row["knowledge_source"] == ["reference_stats"]
    assert 0.0 <= row["test_dice"] <= 1.0
    # A second context (a resumed run, another shard) loads the same model and the same statistics.
    again = BenchContext(settings, mni152_cache, tmp_path, log=lambda _: None)
    assert again.reference.layer_names == names


def test_shards_split_the_seeds_and_meet_after_the_phase(tmp_path, monkeypatch):
    done = []

    def fake_execute(ctx, spec):
        done.append((threading.current_thread().name, spec.seed))
        return {"test_dice": 0.5, "seed": spec.seed}

    monkeypatch.setattr(labels_module, "execute", fake_execute)

    class Ctx:
        settings = BenchSettings()

    specs = [_arm(strategy, 2, True, seed, code_pick()) for seed in range(4) for strategy in ("asfda", "random")]
    views = {}

    def shard(index):
        store = ResultStore(tmp_path)  # each process has its own view of the one file
        views[index] = labels_module.run_phase(Ctx(), store, specs, "main", True, (index, 2))

    threads = [threading.Thread(target=shard, args=(i,), name=f"shard{i}") for i in (1, 0)]
    monkeypatch.setattr(labels_module, "_wait_for_other_shards", _fast_wait(labels_module._wait_for_other_shards))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(s for _, s in done) == [0, 0, 1, 1, 2, 2, 3, 3]  # every run once
    assert all(int(name[-1]) == seed % 2 for name, seed in done)  # each shard only its seeds
    for index in (0, 1):  # both see every run after the barrier
        assert len(views[index]) == len(specs)


def _fast_wait(wait):
    return lambda store, keys, phase: wait(store, keys, phase, poll_s=0.05)
