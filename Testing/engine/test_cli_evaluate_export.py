"""`asfda evaluate`, `asfda model export` / `import --from`, and the JSON outputs of rank and model list."""

import csv
import json

import numpy as np
import pytest
import torch
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.loop.evaluate import score_case
from cli_test_data import imported_datastore, make_setup


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A datastore with v0001 imported and v0002 adapted on one submitted label (case1)."""
    setup = make_setup(tmp_path_factory.mktemp("cli-eval"))
    ds = imported_datastore(setup)
    assert main(["label", "submit", "--datastore", str(ds), "case1", str(setup.refs / "case1.nii.gz")]) == 0
    assert main(["adapt", "--datastore", str(ds), "--steps", "3", "--no-pseudo", "--threads", "1"]) == 0
    return setup, ds


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_score_case_gives_dice_and_hd95_per_label():
    reference = np.zeros((10, 10, 10), dtype=np.int64)
    reference[2:6, 2:6, 2:6] = 1
    reference[7:9, 7:9, 7:9] = 2
    prediction = reference.copy()
    prediction[2:6, 2:6, 6] = 1  # one slice too many (2 mm along z)
    prediction[prediction == 2] = 0  # label 2 missed entirely
    (dice1, hd1), (dice2, hd2) = score_case(prediction, reference, 3, [1.0, 1.0, 2.0])
    assert dice1 == pytest.approx(2 * 64 / (64 + 80)) and hd1 == pytest.approx(2.0)  # one slice of 2 mm
    assert dice2 == 0.0 and not np.isfinite(hd2)
    assert score_case(reference, reference, 3, [1, 1, 1]) == [(1.0, 0.0), (1.0, 0.0)]


def test_evaluate_reports_per_case_and_label_and_leaves_the_active_version(adapted, tmp_path, capsys):
    setup, ds = adapted
    capsys.readouterr()
    csv_path = tmp_path / "eval.csv"
    args = ["evaluate", "--datastore", str(ds), "--labels", str(setup.refs), "--threads", "1"]
    assert main(args + ["--json", "--csv", str(csv_path)]) == 0
    result = json_out(capsys)
    assert result["model_version"] == "v0002" and result["skipped"] == []
    scores = {s["case_id"]: s for s in result["scores"]}
    assert sorted(scores) == [f"case{i}" for i in range(5)]
    assert all(s["label"] == "organ" and 0.0 <= s["dice"] <= 1.0 for s in scores.values())
    assert scores["case1"]["in_training"] and not scores["case0"]["in_training"]
    (summary,) = result["summary"]
    assert summary["cases"] == 5 and summary["held_out_cases"] == 4
    assert summary["mean_dice"] == pytest.approx(np.mean([s["dice"] for s in scores.values()]))
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["case_id"] for r in rows] == sorted(scores) and rows[1]["in_training"] == "1"
    assert float(rows[0]["dice"]) == pytest.approx(scores["case0"]["dice"], abs=1e-6)

    store = Datastore(ds)
    before = sorted(p.name for p in store.label_dir(LabelTag.PREDICTION).iterdir())
    assert main(args + ["--version", "v0001", "--json"]) == 0
    older = json_out(capsys)
    assert older["model_version"] == "v0001" and store.models.active_version() == "v0002"
    assert sorted(p.name for p in store.label_dir(LabelTag.PREDICTION).iterdir()) == before
    assert [s["dice"] for s in older["scores"]] != [s["dice"] for s in result["scores"]]

    assert main(args) == 0
    table = capsys.readouterr().out
    assert "model v0002: 5 case(s)" in table and "case1" in table and "held-out Dice" in table
    assert main(args + ["--version", "v0009"]) == 2
    assert "model version 'v0009' does not exist" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "unknown.nii.gz").write_bytes((setup.refs / "case0.nii.gz").read_bytes())
    assert main(["evaluate", "--datastore", str(ds), "--labels", str(other)]) == 2
    assert "no reference label is named after a datastore case" in capsys.readouterr().err


def test_export_then_import_from_gives_back_the_same_model(adapted, tmp_path, capsys):
    setup, ds = adapted
    out = tmp_path / "export"
    assert main(["model", "export", "--datastore", str(ds), "--version", "v0002", "--out", str(out)]) == 0
    expected = {"model.json", "provenance.json", "weights.pt"}
    for optional in ("feature_prior.npz", "reference_stats.npz"):  # a batch-norm import freezes its statistics
        if (ds / "models" / "v0002" / optional).exists():
            expected.add(optional)
    assert {p.name for p in out.iterdir()} == expected
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["exported_version"] == "v0002" and provenance["lineage"] == ["v0002", "v0001"]
    assert main(["model", "export", "--datastore", str(ds), "--out", str(out)]) == 2
    assert "export folder exists and is not empty" in capsys.readouterr().err

    fresh = tmp_path / "fresh"
    assert main(["model", "import", "--datastore", str(fresh), "--from", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported v0001" in printed and "effective config:" in printed
    original, copy = Datastore(ds).models.load("v0002"), Datastore(fresh).models.load("v0001")
    assert copy.config.to_dict() == original.config.to_dict()
    a, b = original.network.state_dict(), copy.network.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (original.feature_prior is None) == (copy.feature_prior is None)
    meta = json.loads((fresh / "models" / "v0001" / "meta.json").read_text())
    assert "exported v0002" in meta["note"] and meta["metrics"] == provenance["metrics"]

    with open(out / "weights.pt", "ab") as handle:
        handle.write(b"tampered")
    assert main(["model", "import", "--datastore", str(tmp_path / "third"), "--from", str(out)]) == 2
    assert "checksum differs" in capsys.readouterr().err


def test_rank_and_model_list_print_json(adapted, capsys):
    _setup, ds = adapted
    capsys.readouterr()
    assert main(["rank", "--datastore", str(ds), "--k", "2", "--json", "--threads", "1"]) == 0
    rows = json_out(capsys)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and "case1" not in {r["case_id"] for r in rows}
    assert sum(r["selected"] for r in rows) == 2
    assert set(rows[0]) == {
        "rank", "case_id", "score", "dkd", "asd", "selected", "model_version", "knowledge_source", "precision",
        "requested_slices",  # a sparse rank's slices to annotate (None for whole volumes)
    }
    assert rows[0]["precision"] == "fp32"  # on the CPU the one precision rule resolves to fp32
    assert all(r["model_version"] == "v0002" for r in rows)
    assert main(["rank", "--datastore", str(ds), "--strategy", "random", "--k", "1", "--json"]) == 0
    assert sum(r["selected"] for r in json_out(capsys)) == 1
    assert main(["model", "list", "--datastore", str(ds), "--json"]) == 0
    versions = json_out(capsys)
    assert [(v["version"], v["parent"], v["active"]) for v in versions] == [
        ("v0001", None, False),
        ("v0002", "v0001", True),
    ]
    assert versions[1]["metrics"]["labels"] == 1
