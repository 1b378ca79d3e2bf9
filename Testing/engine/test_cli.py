import json
import subprocess
import sys

import numpy as np
import torch
from asfda.cli import main
from asfda.models.networks import build_network
from engine_helpers import blob, shifted, tiny_config, write_nifti


def test_help_lists_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    for command in ("rank", "adapt", "infer", "demo", "model"):
        assert command in out


def test_bad_input_gives_a_nonzero_exit_and_a_one_line_cause(tmp_path, capsys):
    assert main(["rank", "--datastore", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asfda rank: error:") and "\n" not in err
    (tmp_path / "cfg.json").write_text(json.dumps({"network": "Nope"}))
    assert main(["model", "import", "--datastore", str(tmp_path / "ds"), "--config", str(tmp_path / "cfg.json")]) == 2
    assert "network 'Nope'" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()  # a refused import leaves no half-made datastore behind
    (tmp_path / "ds").mkdir()
    assert main(["infer", "--datastore", str(tmp_path / "ds"), "../x"]) == 2
    assert "invalid case id" in capsys.readouterr().err


def test_model_import_rank_infer_adapt_from_the_command_line(tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for i in range(4):
        label, image = blob(i)
        write_nifti(ds / "images" / f"case{i}.nii.gz", shifted(image, label, i, 0.3))
    config = tiny_config()
    (tmp_path / "cfg.json").write_text(json.dumps(config.to_dict()))
    torch.save(build_network(config).state_dict(), tmp_path / "w.pt")
    assert (
        main(
            [
                "model",
                "import",
                "--datastore",
                str(ds),
                "--config",
                str(tmp_path / "cfg.json"),
                "--weights",
                str(tmp_path / "w.pt"),
            ]
        )
        == 0
    )
    assert "imported v0001: state_dict: loaded" in capsys.readouterr().out
    assert main(["rank", "--datastore", str(ds), "--k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(model v0001, cpu, fp32)" in lines[0] and len(lines) == 5
    assert sum(line.rstrip().endswith("*") for line in lines) == 2
    assert main(["infer", "--datastore", str(ds), "case0"]) == 0
    assert (ds / "labels" / "prediction" / "case0.nii.gz").exists()
    capsys.readouterr()
    assert main(["adapt", "--datastore", str(ds), "--steps", "2"]) == 2
    assert "no clinician labels yet" in capsys.readouterr().err
    label, _ = blob(1)
    from asfda.data.datastore import Datastore, LabelTag

    Datastore(ds).save_label("case1", LabelTag.FINAL, label, np.diag([1.5, 1.0, 2.0, 1.0]), [0, 1])
    assert main(["adapt", "--datastore", str(ds), "--steps", "2"]) == 0
    assert "new active model v0002 (parent v0001)" in capsys.readouterr().out
    assert main(["model", "activate", "--datastore", str(ds), "--version", "v0001"]) == 0
    assert main(["model", "list", "--datastore", str(ds)]) == 0
    listing = capsys.readouterr().out
    assert "* v0001" in listing and "  v0002  parent=v0001" in listing


def test_quick_demo_runs_end_to_end_and_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "asfda", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "target test Dice before adaptation" in result.stdout and "asfda + pseudo-labels" in result.stdout
    report = json.loads((out / "demo-report.json").read_text())
    assert 0.0 <= report["dice_before"] <= 1.0 and len(report["arms"]) == 4
    whole = [arm for arm in report["arms"] if arm["slices_per_volume"] == 0]
    (sparse,) = [arm for arm in report["arms"] if arm["slices_per_volume"] > 0]
    assert len(whole) == 3 and all(len(arm["picks"]) == report["k"] for arm in whole)
    # the sparse arm: 3 volumes of 4 requested slices each, fewer slices than the whole-volume arm's
    assert len(sparse["picks"]) == 3 and sparse["cost"]["slices"] == 12 < whole[0]["cost"]["slices"]
    assert "asfda + PL, sparse" in result.stdout and "3 volumes x 4 slices: 12 slices annotated" in result.stdout
    # the hospital mix by default: Dice per protocol, and each arm's cost in slices and estimated minutes
    assert report["pool"] == "hospital" and set(report["dice_before_by_protocol"]) == {"routine", "rare"}
    assert all(set(arm["dice_by_protocol"]) == {"routine", "rare"} for arm in report["arms"])
    assert all(arm["cost"]["slices"] > 0 and arm["cost"]["minutes"] > 0 for arm in report["arms"])
    assert "slices annotated, about" in result.stdout and "routine" in result.stdout and "rare" in result.stdout
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "datastore" / "models" / "v0002" / "meta.json").exists()


def test_every_strategy_is_offered_by_the_cli_and_the_worker():
    from typing import get_args

    from asfda.cli.engine import STRATEGIES
    from asfda.query.strategies import Strategy
    from asfda.worker.schemas import StrategyName

    assert STRATEGIES == [s.value for s in Strategy] == list(get_args(StrategyName))


def test_the_cli_offers_the_validation_gates_default():
    from asfda.adapt.validation_gate import GateOptions
    from asfda.cli.engine import GATE_DECIDES_FROM

    assert GATE_DECIDES_FROM == GateOptions().decide_from_labels
