"""`asfda bench speed` at tiny size: every measurement present and positive, JSON and Markdown written."""

from __future__ import annotations

import json
from types import SimpleNamespace

from asfda.bench.cost.speed import MONAI_LABEL_EPISTEMIC_SAMPLES, SpeedSettings, run_speed  # noqa: E402


def test_speed_tiny(tmp_path):
    args = SimpleNamespace(network="unet", repeats=1, device="cpu", threads=1, tiny=True)
    report = run_speed(SpeedSettings.from_args(args), tmp_path)
    stored = json.loads((tmp_path / "speed-unet.json").read_text())
    assert stored["per_volume"] and stored["ranking"]
    for row in report["per_volume"]:
        for mode in ("inference", "asfda_scoring", "mc_dropout_scoring"):
            assert row[mode]["seconds"] > 0 and len(row[mode]["all_seconds"]) == 1
        assert row["ratio_asfda"] > 0 and row["ratio_mc_dropout"] > 0
    assert [r["pool"] for r in report["ranking"]] == [4, 6]
    assert "MC-dropout" in (tmp_path / "speed-unet.md").read_text()
    assert SpeedSettings().mc_samples == MONAI_LABEL_EPISTEMIC_SAMPLES == 10


def test_peak_memory_child_reports_a_rise(tmp_path):
    from asfda.bench.cost.speed import _volumes, child_peak

    settings = SpeedSettings(roi=(16, 16, 16), mc_samples=2)
    found = child_peak(settings, _volumes((16, 16, 16), 1, 1)[0], "asfda_scoring")
    assert found["peak_mb"] > 0 and found["rise_mb"] >= 0
