"""One loop for every face: `evaluate` scores the file `infer` writes, one precision for infer, rank and the
gate, the device resolved once and an unusable one refused in one line."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest
import torch
from asfda.cli import main
from asfda.core.errors import UnusableDevice
from asfda.io.volumes import load_volume
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings, resolve_device
from asfda.models import inference
from asfda.models.dice import class_dice
from cli_test_data import imported_datastore, make_setup
from engine_helpers import tiny_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("loop"))


def test_evaluate_scores_exactly_the_label_file_infer_writes(setup, tmp_path, capsys):
    # A network grid of 1.3 mm against images of 1.5 x 1 x 2 mm: the map back to the image is not the identity,
    # so resampling probabilities (what evaluate used to do) and mapping class ids back disagree at boundaries.
    config = tiny_config()
    config.spacing = [1.3, 1.3, 1.3]
    (tmp_path / "model.json").write_text(json.dumps(config.validate().to_dict()))
    ds = imported_datastore(setup, "evaluate-infer", config=tmp_path / "model.json")
    assert main(["infer", "--datastore", str(ds)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--datastore", str(ds), "--labels", str(setup.refs), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert len(scores) == len(setup.truth)
    for row in scores:
        written = np.asarray(load_volume(ds / "labels" / "prediction" / f"{row['case_id']}.nii.gz")).astype(np.int64)
        assert row["dice"] == pytest.approx(class_dice(written, setup.truth[row["case_id"]], 2)[0], abs=1e-12)


def test_infer_rank_and_the_gate_run_in_one_precision(setup, monkeypatch):
    seen = []
    original = inference.Predictor.__init__

    def recording(self, network, config, device="cpu", precision=inference.Precision.AUTO):
        original(self, network, config, device, precision)
        seen.append(self.precision)

    monkeypatch.setattr(inference.Predictor, "__init__", recording)
    ds = imported_datastore(setup, "precision")
    session = LoopSession.open(ds, SessionSettings(device="cpu", precision="bf16"))
    assert session.precision == inference.Precision.BF16
    session.infer(["case0"])
    [record] = [r for r in session.store.state.labels("prediction") if r.case_id == "case0"]
    assert record.extra["precision"] == "bf16"  # recorded with the prediction
    outcome = session.rank(RankRequest(k=2))
    assert outcome.precision == "bf16"
    labels = setup.truth
    for case_id in [r.case_id for r in outcome.ranked if r.selected]:
        session.store.save_label(case_id, "final", labels[case_id], session.store.geometry(case_id).affine, [0, 1])
    result = session.adapt(AdaptRequest(steps=2, use_pseudo_labels=False))
    assert result.metrics["precision"] == "bf16" and result.gate["method"] != "disabled"
    # Every Predictor of the session (infer, scoring, the gate's folds) was built with the same precision.
    assert len(seen) >= 3 and set(seen) == {inference.Precision.BF16}


def test_the_device_is_resolved_once_and_an_unusable_one_refused(setup, capsys, monkeypatch):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UnusableDevice, match="not auto, cpu or cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UnusableDevice, match="sees no CUDA device; use --device cpu or auto"):
        resolve_device("cuda:0")
    ds = imported_datastore(setup, "device")
    capsys.readouterr()
    assert main(["rank", "--datastore", str(ds), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA device" in err[0]
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0  # default auto: the CPU here


def test_the_worker_checks_hand_placed_labels_before_a_rank(setup):
    from asfda.worker.tasks import run_rank

    ds = imported_datastore(setup, "hand-placed")
    (ds / "labels" / "final" / "case1.nii.gz").write_bytes((setup.refs / "case1.nii.gz").read_bytes())
    (ds / "labels" / "final" / "case2.nii.gz").write_bytes(b"not a volume")
    from asfda.data.datastore import Datastore
    from asfda.data.label_files import LabelFileError

    with pytest.raises(LabelFileError, match="labels/final/case"):
        run_rank(Datastore(ds), {"strategy": "asfda", "budget_k": 1}, "cpu", lambda *a, **k: None)
    (ds / "labels" / "final" / "case2.nii.gz").unlink()
    store = Datastore(ds)
    assert store.labeled_ids() == ["case1"]  # checked and recorded by the first job's pre-flight
    result = run_rank(store, {"strategy": "asfda", "budget_k": 1}, "cpu", lambda *a, **k: None)
    assert result["ranked"] == len(setup.truth) - 1 and result["precision"] == "fp32"


def test_a_case_id_two_images_name_is_skipped_with_one_line_not_a_crash(setup, capsys):
    ds = imported_datastore(setup, "duplicates")
    (ds / "images" / "case1.nii").write_bytes(gzip.decompress((ds / "images" / "case1.nii.gz").read_bytes()))
    from asfda.core.errors import DuplicateCase
    from asfda.data.datastore import Datastore

    store = Datastore(ds)
    assert "case1" not in store.case_ids() and len(store.case_ids()) == len(setup.truth) - 1
    assert store.duplicate_cases() == {"case1": "2 images name this case (case1.nii, case1.nii.gz): remove all but one"}
    with pytest.raises(DuplicateCase, match="case1.nii, case1.nii.gz"):
        store.image_path("case1")
    capsys.readouterr()
    assert main(["rank", "--datastore", str(ds), "--k", "1", "--json"]) == 0  # before: sqlite3.IntegrityError
    captured = capsys.readouterr()
    assert "skipped case case1: 2 images name this case" in captured.err
    assert "case1" not in {row["case_id"] for row in json.loads(captured.out)}
    from asfda.worker.tasks import run_rank

    result = run_rank(store, {"strategy": "asfda", "budget_k": 1}, "cpu", lambda *a, **k: None)
    assert "case1" in result["skipped"]


def test_the_worker_checks_hand_placed_labels_when_it_starts(setup, caplog):
    from asfda.data.datastore import Datastore
    from asfda.worker.app import check_hand_placed_labels

    ds = imported_datastore(setup, "start-check")
    (ds / "labels" / "final" / "case1.nii.gz").write_bytes((setup.refs / "case1.nii.gz").read_bytes())
    with caplog.at_level(logging.INFO, logger="asfda.worker"):
        check_hand_placed_labels(Datastore(ds))
    assert Datastore(ds).labeled_ids() == ["case1"]
    assert "checked and recorded label found in labels/final/ for case case1" in caplog.text
    (ds / "labels" / "final" / "case2.nii.gz").write_bytes(b"not a volume")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asfda.worker"):
        check_hand_placed_labels(Datastore(ds))  # logged in one line; the worker still starts
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "labels/final/case2.nii.gz" in errors[0].getMessage()


def test_the_worklist_is_stale_once_a_ranked_case_is_labelled(setup):
    from asfda.data.datastore import Datastore
    from asfda.worker.worklist import cases, worklist

    ds = imported_datastore(setup, "stale")
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    store = Datastore(ds)
    active = store.models.active_version()
    listed = worklist(store, active, None)
    assert listed["items"] and not any(item["stale"] for item in listed["items"])
    first = listed["items"][0]["case_id"]
    assert main(["label", "submit", "--datastore", str(ds), first, str(setup.refs / f"{first}.nii.gz")]) == 0
    listed = worklist(store, active, None)  # before: still current, though its diversity pick ignored the label
    assert {(item["stale"], item["stale_reason"]) for item in listed["items"]} == {(True, "labels")}
    assert {c["stale_reason"] for c in cases(store, active) if "rank" in c} == {"labels"}
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    assert not any(item["stale"] for item in worklist(store, active, None)["items"])
    assert {c["stale_reason"] for c in cases(store, "v0099") if "rank" in c} == {"model"}
