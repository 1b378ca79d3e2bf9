"""model.json: the shipped schema agrees with ModelConfig, the documented examples build, missing keys warn."""

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from asfda.cli import build_parser, main
from asfda.models.config import INTENSITY_MODES, SUPPORTED_NETWORKS, IntensityConfig, ModelConfig
from asfda.models.config_checks import RESULT_CHANGING_KEYS, check_config_dict, schema
from engine_helpers import tiny_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "model-config.md"


def test_the_shipped_schema_describes_exactly_the_config_keys_and_defaults():
    shipped = schema()
    properties = shipped["properties"]
    assert set(properties) == {f.name for f in fields(ModelConfig)} and shipped["additionalProperties"] is False
    assert properties["network"]["enum"] == list(SUPPORTED_NETWORKS)
    intensity = properties["intensity"]["properties"]
    assert set(intensity) == {f.name for f in fields(IntensityConfig)}
    assert intensity["mode"]["enum"] == list(INTENSITY_MODES)
    defaults = ModelConfig().to_dict()
    for key, spec in properties.items():
        assert spec["default"] == defaults[key], key


def test_every_documented_example_is_a_valid_config_for_its_network():
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    examples = [json.loads(block) for block in blocks]
    assert sorted(e["network"] for e in examples) == sorted(SUPPORTED_NETWORKS)
    for example in examples:
        assert set(example) <= set(schema()["properties"])
        config, warnings = check_config_dict(example)
        assert warnings == [] and config.network == example["network"]


def test_missing_result_changing_keys_warn_and_strict_refuses(tmp_path, capsys):
    full = tiny_config().to_dict()
    partial = {k: v for k, v in full.items() if k not in ("intensity", "network_args")}
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    ds = str(tmp_path / "ds")
    assert main(["model", "import", "--datastore", ds, "--config", str(tmp_path / "partial.json"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "'intensity' missing: intensity normalisation falls back to z-score" in err
    assert "'network_args' missing" in err and "dropout" in err and "asfda model import: error:" in err
    assert not (tmp_path / "ds" / "models").exists() or not list((tmp_path / "ds" / "models").glob("v*"))
    assert main(["model", "import", "--datastore", ds, "--config", str(tmp_path / "partial.json")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning:") == 2
    effective = json.loads(captured.out.split("effective config:\n", 1)[1])
    assert effective["intensity"] == {"mode": "zscore", "lower": 1.0, "upper": 99.0}
    assert effective == ModelConfig.from_dict(partial).to_dict()
    assert set(RESULT_CHANGING_KEYS) == {"intensity", "network_args", "spacing", "labels"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"intensity": {"mode": "zscore", "window": 3}}, "unknown intensity keys: window"),
        ({"network_args": {"channels": [4, 8], "strides": [2], "bogus": 1}}, "network_args for UNet"),
        ({"colour": "red"}, "unknown model config keys: colour"),
        ({"intensity": "zscore"}, "intensity must be an object"),
    ],
)
def test_bad_nested_keys_are_one_line_errors(tmp_path, capsys, change, message):
    (tmp_path / "bad.json").write_text(json.dumps({**tiny_config().to_dict(), **change}))
    assert main(["model", "import", "--datastore", str(tmp_path / "ds"), "--config", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize(
    "command, shown",
    [
        (["model", "import"], ["--from", "--strict"]),
        (["model", "export"], ["--out"]),
        (["adapt"], ["(default: 80)", "seed of crop sampling", "(default: 0)"]),
        (["rank"], ["(default: asfda)", "(default: 4)", "--json", "--threads"]),
        (["evaluate"], ["--version", "--csv", "--json", "--threads"]),
        (["case", "add"], ["--id", "--skip-existing"]),
        (["label", "submit"], ["--author", "--allow-empty", "--base-revision", "--overwrite"]),
        (["infer"], ["--threads"]),
    ],
)
def test_each_sub_command_has_its_own_help_with_defaults(capsys, command, shown):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(command + ["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for item in shown:
        assert item in text, item
    if command[0] == "model":  # one action's help, not the others'
        others = {"import": "--strict", "export": "--out"}
        assert all(flag not in text for action, flag in others.items() if action != command[1])
