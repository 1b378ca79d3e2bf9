"""The multi-class task of the label-efficiency benchmark at CI size: MNI152 background / GM / WM, headline arms,
severity bands as subgroups, 3-class Dice in every output, and a fingerprint of its own."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
from asfda.bench.labels import run_labels, settings_from_args
from asfda.bench.settings import tiny_settings
from asfda.bench.sources import fetch_all


@pytest.fixture(scope="module")
def tissue_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("data")
    fetch_all(cache, names=["mni152"], log=lambda _: None)  # ships inside the nilearn wheel: no network
    out = tmp_path_factory.mktemp("tissue")
    args = SimpleNamespace(task="tissue", headline_only=True)
    settings = settings_from_args(args, tiny_settings())
    phases = run_labels(settings, cache, out, log=lambda _: None)
    return settings, out, phases


def test_tissue_settings_have_their_own_fingerprint(tissue_run):
    settings, _, _ = tissue_run
    brain = settings_from_args(SimpleNamespace(headline_only=True), tiny_settings())
    assert settings.task == "tissue" and brain.task == "brain"
    assert settings.anatomies == ["mni152"] and settings.source_anatomies == ("mni152",)
    assert settings.fingerprint() != brain.fingerprint()


def test_tissue_outputs_are_well_formed_with_three_class_dice(tissue_run):
    settings, out, phases = tissue_run
    for row in phases["reference"] + phases["main"]:
        by_class = row["test_by_class"]
        assert set(by_class) == {"grey_matter", "white_matter"}
        assert all(0.0 <= v <= 1.0 for v in by_class.values())
        # the reported Dice is the mean foreground Dice over GM and WM (same subjects, equal weight)
        assert abs(row["test_dice"] - sum(by_class.values()) / 2) < 1e-6
        assert set(row["test_by_anatomy"]) == {"mni152"}
    arms = {(r["strategy"], r["pseudo"], r["k"]) for r in phases["main"]}
    for k in settings.budgets:
        assert {("asfda", True, k), ("random", True, k), ("random", False, 2 * k)} <= arms
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    for r in rows:
        assert 0.0 <= float(r["class_grey_matter"]) <= 1.0 and 0.0 <= float(r["class_white_matter"]) <= 1.0
        assert r["worst_band"] in {"mild", "moderate", "severe"}
    report = (out / "report.md").read_text()
    assert "## Test Dice per foreground class" in report and "## Worst severity band per arm" in report
    head = json.loads((out / "headline.json").read_text())
    assert head["meta"]["fingerprint"] == settings.fingerprint() and head["meta"]["settings"]["task"] == "tissue"
    assert all(t["worst_group"] in {"mild", "moderate", "severe"} for t in head["targets"]["c"])
