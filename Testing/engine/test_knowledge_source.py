import json
import sqlite3

import pytest
import torch
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.state import ScoreRecord, StateDB
from asfda.models.config import ModelConfig
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.models.reference_stats import reference_stats_of
from asfda.query.dkd import KnowledgeSource, choose_knowledge_source
from asfda.query.signals import compute_signals
from asfda.worker.worklist import worklist
from bundle_helpers import CT_AFFINE, ct_volume, wholebody_like, write_bundle
from engine_helpers import blob, shifted, tiny_config, write_nifti

SWIN_SHAPE = (32, 24, 24)

_OLD_SCORES = """CREATE TABLE scores (case_id TEXT NOT NULL, strategy TEXT NOT NULL, model_version TEXT, dkd REAL,
asd REAL, score REAL, rank INTEGER, selected INTEGER NOT NULL DEFAULT 0, scored_at TEXT NOT NULL, run_id TEXT,
PRIMARY KEY (case_id, strategy))"""


def test_an_older_state_database_gains_the_knowledge_source_column_and_keeps_its_scores(tmp_path):
    path = tmp_path / "asfda.db"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_SCORES)
        db.execute("INSERT INTO scores VALUES ('a', 'asfda', 'v0001', 0.5, 0.2, 0.4, 1, 1, '2026-01-01', 'r1')")
    state = StateDB(path)
    (old,) = state.scores("asfda")
    assert (old.case_id, old.dkd, old.knowledge_source) == ("a", 0.5, None)
    StateDB(path)  # opening again finds the column and leaves it alone
    record = ScoreRecord("b", "asfda", "v0002", 0.1, 0.3, 0.2, 1, True, "2026-01-02", "r2", "reference_stats")
    state.replace_scores("asfda", [record])
    assert state.scores("asfda") == [record]


def _swin_config():
    # SwinUNETR keeps no running statistics: layer norms (channels last) in the encoder, instance norms in
    # the decoder. Tiny: feature size 12, one block per stage, windows of 4, a 64x32x32 patch.
    return ModelConfig(
        network="SwinUNETR",
        network_args={"feature_size": 12, "depths": [1, 1, 1, 1], "window_size": 4},
        roi_size=[64, 32, 32],
    ).validate()


def _images(pairs):
    return ((name, torch.as_tensor(image)[None]) for name, image in pairs)


def test_dkd_for_swin_unetr_uses_reference_statistics_and_grows_with_the_shift():
    config = _swin_config()
    torch.manual_seed(0)
    predictor = Predictor(build_network(config), config)
    reference = reference_stats_of(predictor, _images((f"src{s}", blob(s, SWIN_SHAPE)[1]) for s in range(4)))
    assert any(".norm1" in name for name in reference.layer_names)  # Swin layer norms are part of it
    images = {}
    for seed in (100, 101):
        label, image = blob(seed, SWIN_SHAPE)
        images[f"source_{seed}"] = torch.as_tensor(image)[None]
        images[f"shifted_{seed}"] = torch.as_tensor(shifted(image, label, seed))[None]
    signals = {s.case_id: s for s in compute_signals(predictor, images, reference_stats=reference)}
    assert {s.knowledge_source for s in signals.values()} == {KnowledgeSource.REFERENCE_STATS.value}
    for seed in (100, 101):
        assert signals[f"shifted_{seed}"].dkd > 3 * signals[f"source_{seed}"].dkd
    # The gap grows with the shift's strength, as it does against batch-norm running statistics.
    label, image = blob(103, SWIN_SHAPE)
    graded = {f"s{int(10 * s)}": torch.as_tensor(shifted(image, label, 7, s))[None] for s in (0.2, 0.6, 1.0)}
    gaps = [s.dkd for s in compute_signals(predictor, graded, reference_stats=reference)]
    assert gaps[0] < gaps[1] < gaps[2]


def test_reference_statistics_come_before_batch_norm_buffers_unless_another_source_is_asked_for():
    config = tiny_config()
    network = build_network(config)
    predictor = Predictor(network, config)
    reference = reference_stats_of(predictor, _images([("a", blob(0)[1])]))
    assert choose_knowledge_source(network, None, reference=reference) == KnowledgeSource.REFERENCE_STATS
    assert choose_knowledge_source(network, None) == KnowledgeSource.NORM_STATS
    assert choose_knowledge_source(network, None, KnowledgeSource.NORM_STATS, reference) == KnowledgeSource.NORM_STATS
    # A source the model lacks falls back to the order of preference.
    assert choose_knowledge_source(network, None, KnowledgeSource.FEATURE_PRIOR, reference) == (
        KnowledgeSource.REFERENCE_STATS
    )
    (signal,) = compute_signals(predictor, {"a": torch.as_tensor(blob(0)[1])[None]}, reference_stats=reference)
    assert signal.dkd == pytest.approx(0.0, abs=1e-9)  # the reference volume itself is at zero distance


def test_import_with_reference_volumes_stores_statistics_that_every_adapted_version_inherits(tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    refs = tmp_path / "reference"
    refs.mkdir()
    for i in range(3):
        _, image = ct_volume(i, strength=0.5 * i)
        write_nifti(ds / "images" / f"ct{i}.nii.gz", image, CT_AFFINE)
    for i in range(2):
        write_nifti(refs / f"src{i}.nii.gz", ct_volume(10 + i)[1], CT_AFFINE)
    bundle = write_bundle(tmp_path / "wholebody", wholebody_like())
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["model", "import", "--datastore", str(ds), "--bundle", str(bundle), "--reference"]
    assert main([*args, str(empty)]) == 2
    assert "no volumes" in capsys.readouterr().err and not Datastore(ds).models.versions()

    assert main([*args, str(refs)]) == 0
    out = capsys.readouterr().out
    assert "reference statistics: " in out and "from 2 volume(s) (src0, src1)" in out
    stats = (ds / "models" / "v0001" / "reference_stats.npz").read_bytes()
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    assert "DKD knowledge source: reference_stats" in capsys.readouterr().out
    store = Datastore(ds)
    assert {item["knowledge_source"] for item in worklist(store, "v0001", None)["items"]} == {"reference_stats"}

    store.save_label("ct0", LabelTag.FINAL, ct_volume(0)[0], CT_AFFINE, store.models.load().config.label_values)
    assert main(["adapt", "--datastore", str(ds), "--steps", "1", "--no-pseudo"]) == 0
    assert (ds / "models" / "v0002" / "reference_stats.npz").read_bytes() == stats  # frozen at import
    assert store.models.load("v0002").reference_stats.layer_names


def test_a_model_config_import_takes_reference_volumes_too(tmp_path, capsys):
    ds, refs = tmp_path / "ds", tmp_path / "reference"
    (ds / "images").mkdir(parents=True)
    refs.mkdir()
    for i in range(2):
        label, image = blob(i)
        write_nifti(ds / "images" / f"case{i}.nii.gz", shifted(image, label, i, 0.5))
        write_nifti(refs / f"src{i}.nii.gz", blob(20 + i)[1])
    config = tiny_config()
    (tmp_path / "cfg.json").write_text(json.dumps(config.to_dict()))
    torch.save(build_network(config).state_dict(), tmp_path / "w.pt")
    args = ["--config", str(tmp_path / "cfg.json"), "--weights", str(tmp_path / "w.pt"), "--reference", str(refs)]
    assert main(["model", "import", "--datastore", str(ds), *args]) == 0
    assert "imported v0001: state_dict: loaded" in capsys.readouterr().out
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    assert "DKD knowledge source: reference_stats" in capsys.readouterr().out  # before the batch-norm buffers
