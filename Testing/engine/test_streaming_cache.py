"""Ranking streams the pool, caches per-case signals by (case, model version, image, options) and resumes."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore, LabelTag
from asfda.loop.rank import rank_pool
from asfda.models.networks import build_network
from asfda.query.asd import ForegroundRule
from asfda.query.signals import compute_signals
from asfda.query.strategies import RankingOptions, Strategy
from asfda.scoring.options import ScoringOptions
from asfda.scoring.pool import Yielded
from engine_helpers import blob, pool_datastore, shifted, tiny_config, write_nifti

POOL = 6


def _rank(store, workers=0, **scoring):
    return rank_pool(store, RankingOptions(k=2), scoring=ScoringOptions(loader_workers=workers, **scoring))


def test_streamed_rank_matches_in_memory_scoring_and_skips_a_corrupt_case(tmp_path):
    from asfda.data.cases import prepared_image
    from asfda.models.inference import Predictor

    store = pool_datastore(tmp_path / "ds", POOL)
    (store.images_dir / "broken.nii.gz").write_bytes(b"not a volume")
    outcome = _rank(store, workers=2)  # two reader processes
    assert set(outcome.errors) == {"broken"} and "broken" not in {r.case_id for r in outcome.ranked}
    assert len(outcome.ranked) == POOL and outcome.scored == POOL and outcome.cached == 0
    model = store.models.load()
    images = {f"case{i}": prepared_image(store, f"case{i}", model.config) for i in range(POOL)}
    direct = {s.case_id: s for s in compute_signals(Predictor(model.network, model.config), images)}
    for ranked in outcome.ranked:
        expected = direct[ranked.case_id]
        assert ranked.dkd == pytest.approx(expected.dkd, rel=1e-5)
        assert ranked.asd == pytest.approx(expected.asd, rel=1e-5)


def test_rerank_hits_the_cache_and_each_key_part_invalidates(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    first = _rank(store)
    assert (first.scored, first.cached) == (POOL, 0)
    again = _rank(store)
    assert (again.scored, again.cached) == (0, POOL)
    assert [(r.case_id, r.score) for r in again.ranked] == [(r.case_id, r.score) for r in first.ranked]

    # A changed image: only that case is scored again.
    label, image = blob(0)
    write_nifti(store.images_dir / "case0.nii.gz", shifted(image, label, 0, strength=0.9))
    changed = _rank(store)
    assert (changed.scored, changed.cached) == (1, POOL - 1)

    # Changed scoring options: everything again, then cached under the new options too.
    other_rule = _rank(store, asd_rule=ForegroundRule.WHOLE_VOLUME)
    assert other_rule.scored == POOL
    assert _rank(store, asd_rule=ForegroundRule.WHOLE_VOLUME).scored == 0

    # A new version with the same content is the same model (keyed by content, not name); other weights are not.
    model = store.models.load()
    store.models.publish(model.network, model.config, parent=model.version, note="same weights")
    assert _rank(store).scored == 0
    with torch.no_grad():
        next(model.network.parameters()).add_(0.5)
    store.models.publish(model.network, model.config, parent=model.version, note="child")
    assert _rank(store).scored == POOL


def test_random_strategy_scores_nothing(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    outcome = rank_pool(store, RankingOptions(strategy=Strategy.RANDOM, k=2))
    assert outcome.scored == 0 and len(outcome.ranked) == POOL and sum(r.selected for r in outcome.ranked) == 2
    with connect(store.root / "asfda.db") as db:
        has_table = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'signals'").fetchone()
        assert not has_table or db.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 0


def test_a_yielding_rank_keeps_its_chunks_and_the_next_rank_resumes(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    asks = []

    def should_yield():
        asks.append(1)
        return True

    with pytest.raises(Yielded):
        rank_pool(
            store,
            RankingOptions(k=2),
            scoring=ScoringOptions(loader_workers=0, chunk_size=2),
            should_yield=should_yield,
        )
    assert len(asks) == 1
    resumed = _rank(store)
    assert (resumed.scored, resumed.cached) == (POOL - 2, 2)


def test_a_killed_rank_keeps_what_it_scored(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    script = textwrap.dedent(
        f"""
        import os
        from asfda.data.datastore import Datastore
        from asfda.query.strategies import RankingOptions
        from asfda.loop.rank import rank_pool
        from asfda.scoring.options import ScoringOptions

        def progress(phase, step, total):
            if step == 3:
                os._exit(9)  # no cleanup at all, as under SIGKILL

        rank_pool(Datastore({str(store.root)!r}), RankingOptions(k=2), progress=progress,
                  scoring=ScoringOptions(loader_workers=0))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 9
    resumed = _rank(store)
    assert (resumed.scored, resumed.cached) == (POOL - 3, 3)


def test_labelled_cases_are_scored_for_coverage_but_not_ranked(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    label, _ = blob(1)
    store.save_label("case1", LabelTag.FINAL, label, store.geometry("case1").affine, [0, 1])
    outcome = _rank(store)
    assert "case1" not in {r.case_id for r in outcome.ranked} and outcome.scored == POOL


def test_label_maps_go_back_with_nearest_neighbour_and_keep_only_predicted_ids():
    from asfda.data.cases import prepared_image  # noqa: F401  (the same preprocessing path as the product)
    from asfda.models.config import ModelConfig
    from asfda.models.preprocess import labels_to_original_space, prepare_image
    from monai.data import MetaTensor

    config = ModelConfig(labels={"background": 0, "a": 1, "b": 2, "c": 3}, spacing=[2.0, 2.0, 2.0])
    volume = MetaTensor(
        torch.rand(30, 28, 26), affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    )
    prepared = prepare_image(volume, config)
    net_space = torch.zeros(prepared.shape[1:], dtype=torch.uint8)
    half = net_space.shape[0] // 2
    net_space[:half, 4:10, 4:10] = 1
    net_space[half:, 4:10, 4:10] = 3  # 1 | 3 side by side: a linear inverse would put 2 on the border
    back = labels_to_original_space(prepared, net_space, config)
    assert tuple(back.shape) == (30, 28, 26)
    assert set(np.unique(back.numpy()).tolist()) == {0, 1, 3}


def test_a_multi_class_pseudo_label_file_holds_only_predicted_ids_and_its_mask(tmp_path):
    from asfda.adapt.finetune import FinetuneOptions
    from asfda.adapt.pseudo_labels import mask_path
    from asfda.data.cases import prepared_image
    from asfda.io.volumes import load_volume
    from asfda.loop.adapt import AdaptOptions, adapt_datastore
    from asfda.models.inference import Predictor

    labels = {"background": 0, "a": 1, "b": 2, "c": 3}
    config = tiny_config(labels)
    config.spacing = [2.0, 2.0, 2.0]  # images at 1.5 x 1 x 2 mm: the label maps are resampled back
    store = Datastore(tmp_path / "ds")
    torch.manual_seed(3)
    store.models.publish(build_network(config), config, parent=None, note="four labels")
    for seed in range(5):
        label, image = blob(seed, shape=(32, 40, 24))
        write_nifti(store.images_dir / f"case{seed}.nii.gz", shifted(image, label, seed, strength=0.3))
    label, _ = blob(0, shape=(32, 40, 24))
    store.save_label("case0", LabelTag.FINAL, label * 3, store.geometry("case0").affine, [0, 1, 2, 3])
    options = AdaptOptions(finetune=FinetuneOptions(steps=1), scoring=ScoringOptions(loader_workers=0))
    options.reliability.asd_quantile = options.reliability.distance_quantile = 1.0  # every candidate
    result = adapt_datastore(store, options)
    assert result.pseudo_cases
    teacher = store.models.load(result.parent)
    predictor = Predictor(teacher.network, teacher.config)
    for case_id in result.pseudo_cases:
        predicted = set(np.unique(predictor.label_map(prepared_image(store, case_id, teacher.config)).numpy()))
        stored = load_volume(store.label_path(case_id, LabelTag.PSEUDO))
        assert tuple(stored.shape) == (32, 40, 24)
        assert set(np.unique(stored.numpy()).astype(int)) <= {int(v) for v in predicted}
        mask = load_volume(mask_path(store, case_id))
        assert tuple(mask.shape) == (32, 40, 24) and set(np.unique(mask.numpy()).astype(int)) <= {0, 1}
