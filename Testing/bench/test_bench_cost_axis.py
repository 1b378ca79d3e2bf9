"""The cost axis of `asfda bench labels` at CI size: whole against sparse at equal slice budgets, through the
product's loop (simulated annotator round, masked training), with paired tests; resumable from its cache."""

from __future__ import annotations

import json

import pytest
from asfda.bench.cost_axis import run_cost_axis
from asfda.bench.settings import tiny_cost_settings
from asfda.bench.sources import fetch_all


@pytest.fixture(scope="module")
def cost_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("data")
    fetch_all(cache, names=["mni152"], log=lambda _: None)  # inside the nilearn wheel: no network
    out = tmp_path_factory.mktemp("cost")
    settings = tiny_cost_settings()
    import asfda.data.label_submit as submit
    import asfda.loop.annotator as annotator
    import asfda.loop.session as session

    calls = {"rank": 0, "adapt": 0, "masked submits": 0}

    def counted(name, function, when=lambda *a, **k: True):
        def wrapper(*args, **kwargs):
            calls[name] += bool(when(*args, **kwargs))
            return function(*args, **kwargs)

        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session, "rank_pool", counted("rank", session.rank_pool))
        patch.setattr(session, "adapt_datastore", counted("adapt", session.adapt_datastore))
        masked = counted("masked submits", submit.submit_label_array, lambda *a, **k: k.get("mask") is not None)
        patch.setattr(annotator, "submit_label_array", masked)
        summary = run_cost_axis(settings, cache, out, pools=["uniform"], log=lambda _: None)
    rows = [json.loads(line) for line in (out / "cache" / "runs.jsonl").read_text().splitlines()]
    return settings, cache, out, summary, rows, calls


def test_paired_arms_spend_equal_slices_and_sparse_arms_train_on_masks(cost_run):
    settings, _, _, _, rows, calls = cost_run
    runs = [r for r in rows if r["strategy"] != "none"]
    # 2 seeds x 2 strategies x (whole 1, sparse 4 x 4 slices, whole 4; 16 x 4 needs more than the pool's 8
    # volumes), each a rank and an adapt of the loop
    assert len(runs) == 12 and calls["rank"] == calls["adapt"] == 12
    whole1 = [r for r in runs if r["slices_per_volume"] == 0 and r["k"] == 1]
    sparse = [r for r in runs if r["slices_per_volume"] == 4]
    assert len(whole1) == len(sparse) == 4 and {r["k"] for r in sparse} == {4}
    assert {r["annotated_slices"] for r in whole1} == {16} == {r["annotated_slices"] for r in sparse}
    assert {r["annotated_slices"] for r in runs if r["slices_per_volume"] == 0 and r["k"] == 4} == {64}
    whole = [r for r in runs if r["slices_per_volume"] == 0]
    assert all(r["label_masks"] == 0 and r["sparse_labels"] == 0 for r in whole)
    assert all(r["label_masks"] == 4 and r["sparse_labels"] == 4 and r["labelled_volumes"] == 4 for r in sparse)
    assert calls["masked submits"] == 4 * 4
    assert all(r["annotation_minutes"] > 0 and r["gate"][0]["reason"] == "validation gate switched off" for r in runs)


def test_the_report_has_the_target_and_baseline_tests_over_seeds(cost_run):
    _, _, out, summary, _, _ = cost_run
    pool = summary["pools"]["uniform"]
    assert pool["subgroup_field"] == "test_by_anatomy" and pool["whole_top_k"] == 4
    (target,) = pool["target_sparse"]  # 4 x 4 slices: a quarter of whole 4's 64
    assert target["n"] == 2 and target["share_of_slices"] == 0.25 and "p_t" in target and "met" in target
    assert target["worst_subgroup"] == "mni152"
    assert {(t["baseline"], t["form"]) for t in pool["baselines"]} == {
        ("clasp_pe", "whole, 1 volume(s)"),
        ("clasp_pe", "whole, 4 volume(s)"),
        ("clasp_pe", "sparse, 4 x 4 slices"),
    }
    assert all(t["n"] == 2 and t["p_t_holm"] >= t["p_t"] and t["verdict"] for t in pool["baselines"])
    assert {a["worst_subgroup"] for a in pool["arms"]} == {"mni152"}
    text = (out / "cost_axis.md").read_text()
    assert (out / "dice_per_minute.png").stat().st_size > 10_000  # the Dice-per-minute plot beside the tables
    assert "| asfda + PL | sparse, 4 x 4 slices | 16 |" in text and "asfda - clasp_pe + PL" in text


def test_a_second_invocation_reads_the_cache_and_runs_nothing(cost_run):
    settings, cache, out, summary, _, _ = cost_run
    import asfda.bench.cost_axis as cost_axis

    def refuse(*args, **kwargs):
        raise AssertionError("a cached run ran again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("asfda.bench.labels.execute", refuse)
        again = cost_axis.run_cost_axis(settings, cache, out, pools=["uniform"], log=lambda _: None)
    assert again["pools"] == json.loads(json.dumps(summary["pools"], default=str))


def test_unknown_pool_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="pools must be among"):
        run_cost_axis(tiny_cost_settings(), tmp_path, tmp_path / "out", pools=["clinic"])
    assert not (tmp_path / "out").exists()


def test_pool_templates_of_other_settings_are_other_folders(tmp_path):
    """The cost axis runs several pool mixes on one results folder (in one process or one per pool): a template
    datastore (the pool's images and source model) must never be shared across settings."""
    from types import SimpleNamespace

    import numpy as np
    from asfda.bench.runner import _template
    from asfda.bench.settings import BenchSettings
    from asfda.demo.data import Subject
    from asfda.demo.source_model import demo_model_config
    from asfda.models.networks import build_network

    config = demo_model_config({"background": 0, "brain": 1}, (16, 16, 16))
    subject = Subject("pool0_a_00", np.zeros((16, 16, 16), np.float32), np.zeros((16, 16, 16), np.uint8))
    pool = SimpleNamespace(cohort=SimpleNamespace(subjects=[subject], anatomy={subject.case_id: "a"}))

    def ctx(mix):
        return SimpleNamespace(
            settings=BenchSettings(pool_mix=mix),
            scratch=tmp_path,
            pool=lambda _replicate: pool,
            affine={"a": np.eye(4)},
            network=build_network(config),
            config=config,
            prior=None,
            reference=None,
        )

    uniform, hospital = _template(ctx("uniform"), 0), _template(ctx("hospital"), 0)
    assert uniform != hospital and (uniform / ".complete").exists() and (hospital / ".complete").exists()
    assert _template(ctx("uniform"), 0) == uniform


def test_the_cost_fields_leave_other_runs_keys_and_rows_as_they_were():
    from asfda.bench.spec import RunSpec

    whole = RunSpec("main", "x", "asfda", 4, True, 0)
    effective = whole.effective("f")
    assert "slices_per_volume" not in effective and "gate" not in effective and "validation_gate" not in effective
    sparse = RunSpec("cost", "x", "asfda", 16, True, 0, slices_per_volume=4, validation_gate=False)
    assert sparse.effective("f")["gate"] is False and sparse.key("f") != whole.key("f")
    assert "gate" not in whole.to_dict()  # a row's "gate" is its list of verdicts (the report iterates it)
