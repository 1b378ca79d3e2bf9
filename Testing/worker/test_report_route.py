"""`GET /report` (issue 22): per adaptation round the cases, annotated slices and minutes, as `asfda report` prints
them; an annotator may read it; before any round it is an empty list. In process (TestClient, no lifespan)."""

from __future__ import annotations

import json

import pytest
from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.options import AdaptOptions
from asfda.adapt.validation_gate import GateOptions
from asfda.data.datastore import Datastore
from asfda.data.effort import EFFORT, parse_effort
from asfda.data.label_submit import LabelSubmission, submit_label_array
from asfda.loop.adapt import adapt_datastore
from asfda.loop.report import effort_report
from asfda.models.config import ModelConfig
from asfda.worker.app import create_app
from asfda.worker.sample import make_sample_datastore, sample_affine
from asfda.worker.settings import WorkerSettings
from fastapi.testclient import TestClient

PORT = 8765
ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
OPTIONS = AdaptOptions(FinetuneOptions(steps=1), use_pseudo_labels=False, gate=GateOptions(enabled=False))


def submit(store, config, truth, case_id, seconds=None, slices=0):
    record = {"active_seconds": seconds, "idle_gap_threshold_s": 60, "voxels_changed": 5, "slices_changed": slices}
    extra = {EFFORT: parse_effort(record)} if seconds is not None else {}
    submission = LabelSubmission(case_id, None, "dr-report", "simulated", extra=extra)
    submit_label_array(store, submission, truth[case_id], sample_affine(), config, store.models.active_version())


def client_of(root, tmp_path, token):
    annotators = tmp_path / "annotators.json"
    annotators.write_text(json.dumps({"alice": ALICE}))
    settings = WorkerSettings.build(root, "127.0.0.1", PORT, "cpu", ADMIN, 1, annotators)
    client = TestClient(create_app(settings), base_url=f"http://127.0.0.1:{PORT}")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture(scope="module")
def one_round(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-route") / "ds"
    truth = make_sample_datastore(root, n_cases=4)
    store = Datastore(root)
    config = ModelConfig.load(store.models.root / store.models.active_version() / "config.json")
    baseline = store.models.active_version()
    submit(store, config, truth, "case00", seconds=90, slices=4)
    submit(store, config, truth, "case01")  # no effort record: minutes unknown, every slice counted
    adapted = adapt_datastore(store, OPTIONS)
    return root, baseline, adapted.version


def test_report_route_sums_each_round_for_an_annotator(one_round, tmp_path):
    root, baseline, version = one_round
    reply = client_of(root, tmp_path, ALICE).get("/report")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["baseline"] == baseline
    (only,) = body["rounds"]
    assert (only["version"], only["parent"], only["cases"]) == (version, baseline, 2)
    assert only["annotated_slices"] == 4 + 16  # the recorded 4; every slice of the 16^3 volume for case01
    assert only["minutes"] is None and only["minutes_known"] == 1
    assert [(label["case_id"], label["slices_from"], label["minutes"]) for label in only["labels"]] == [
        ("case00", "effort", 1.5),
        ("case01", "volume", None),
    ]
    # Exactly what `asfda report --json` prints for the same datastore, less the Dice it needs references for.
    engine = effort_report(Datastore(root)).to_dict()
    assert [{k: r[k] for k in only} for r in engine["rounds"]] == body["rounds"]
    assert "dice" not in only


def test_report_before_any_round_is_empty(tmp_path):
    root = tmp_path / "ds"
    make_sample_datastore(root, n_cases=2)
    client = client_of(root, tmp_path, ADMIN)
    assert client.get("/report").json() == {"baseline": None, "rounds": []}
    client.headers.pop("Authorization")
    assert client.get("/report").status_code == 401
