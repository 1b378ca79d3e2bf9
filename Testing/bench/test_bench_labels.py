"""The label-efficiency benchmark at CI size: runs end to end, writes well-formed outputs, resumes from its cache."""

from __future__ import annotations

import csv
import json

import pytest
from asfda.bench.labels import run_labels  # noqa: E402
from asfda.bench.settings import tiny_settings  # noqa: E402
from asfda.bench.sources import fetch_all  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # MNI152 ships inside the nilearn wheel, so CI needs no network; the registry sources are optional.
    cache = tmp_path_factory.mktemp("data")
    records = fetch_all(cache, names=["mni152"], log=lambda _: None)
    assert [r.status for r in records if r.name == "mni152"] == ["ready"]
    out = tmp_path_factory.mktemp("labels")
    settings = tiny_settings()
    calls = {"rank": 0, "adapt": 0}
    import asfda.loop.session as session

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    # The benchmark must run the worker's code (the LoopSession) on real datastores: count the calls into it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session, "rank_pool", counted("rank", session.rank_pool))
        patch.setattr(session, "adapt_datastore", counted("adapt", session.adapt_datastore))
        phases = run_labels(settings, cache, out, log=lambda _: None)
    runs = {r["key"]: r for rows in phases.values() for r in rows if r["strategy"] != "none"}  # phases share runs
    rounds = sum(r["rounds"] for r in runs.values())
    assert calls == {"rank": rounds, "adapt": rounds}
    return settings, cache, out, phases


def test_outputs_are_written_and_well_formed(tiny_run):
    settings, _, out, phases = tiny_run
    report = (out / "report.md").read_text()
    assert "## Test Dice per strategy and budget" in report
    assert "## Headline comparisons" in report
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    main = [r for r in rows if r["phase"] == "main"]
    arms = {(r["strategy"], r["pseudo"], int(r["k"])) for r in main}
    for strategy in settings.strategies:
        for pseudo in ("True", "False"):
            for k in settings.budgets:
                assert (strategy, pseudo, k) in arms
    for r in rows:
        assert 0.0 <= float(r["test_mean"]) <= 1.0
        assert r["worst_anatomy"] == "mni152"
    head = json.loads((out / "headline.json").read_text())
    assert {"a", "b", "c"} == set(head["targets"])
    assert head["meta"]["fingerprint"] == settings.fingerprint()
    png = (out / "dice_vs_budget.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for row in phases["main"]:  # annotation cost in volumes and in foreground voxels; the gate's verdict
        expected = min(row["k"], settings.n_pool_per_anatomy)  # one anatomy at CI size
        assert row["labelled_volumes"] == len(row["picks"]) == expected and row["labelled_foreground_voxels"] > 0
        assert [g["activated"] for g in row["gate"]] and all(g["reason"] for g in row["gate"])
    unadapted = [r for r in phases["reference"] if r["variant"] == "unadapted"]
    assert len(unadapted) == 1 and unadapted[0]["picks"] == []


def test_every_run_is_cached_once_and_a_rerun_resumes(tiny_run):
    settings, cache, out, phases = tiny_run
    lines = (out / "cache" / "runs.jsonl").read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys))
    picks = [r for r in phases["main"] if r["strategy"] == "asfda" and r["k"] == 2]
    assert all(len(r["picks"]) == 2 and len(set(r["picks"])) == 2 for r in picks)
    run_labels(settings, cache, out, log=lambda _: None)
    assert (out / "cache" / "runs.jsonl").read_text().splitlines() == lines
