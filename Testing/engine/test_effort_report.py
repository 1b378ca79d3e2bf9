"""`asfda report`: adaptation rounds from a datastore with two adapted versions and effort records; Dice per
annotator-minute against reference labels; the plot file written; a malformed effort record refused."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.options import AdaptOptions
from asfda.adapt.validation_gate import GateOptions
from asfda.cli.main import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.effort import EFFORT, InvalidEffort, parse_effort
from asfda.data.label_submit import LabelSubmission, submit_label, submit_label_array
from asfda.data.leases import LeaseBook
from asfda.loop.adapt import adapt_datastore
from asfda.loop.report import effort_report
from asfda.models.config import ModelConfig
from asfda.worker.sample import make_sample_datastore, sample_affine

OPTIONS = AdaptOptions(FinetuneOptions(steps=1), use_pseudo_labels=False, gate=GateOptions(enabled=False))


def effort(seconds: float, slices: int) -> dict:
    return parse_effort(
        {
            "active_seconds": seconds,
            "idle_gap_threshold_s": 60,
            "voxels_changed": 10 * slices,
            "slices_changed": slices,
            "effects": ["Paint"],
        }
    )


def submit(store, config, truth, case_id, record=None):
    extra = {EFFORT: record} if record is not None else {}
    submission = LabelSubmission(case_id, None, "dr-report", "simulated", extra=extra)
    submit_label_array(store, submission, truth[case_id], sample_affine(), config, store.models.active_version())


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    truth = make_sample_datastore(root / "ds", n_cases=5)
    store = Datastore(root / "ds")
    config = ModelConfig.load(store.models.root / store.models.active_version() / "config.json")
    submit(store, config, truth, "case00", effort(90, 4))
    submit(store, config, truth, "case01", effort(150, 6))
    first = adapt_datastore(store, OPTIONS)
    submit(store, config, truth, "case02", effort(60, 3))
    submit(store, config, truth, "case03")  # no effort record: the round's minutes are unknown
    second = adapt_datastore(store, OPTIONS)
    references = root / "references"
    references.mkdir()
    for case_id in ("case04",):
        nib.save(nib.Nifti1Image(truth[case_id], sample_affine()), str(references / f"{case_id}.nii.gz"))
    return store, first, second, references


def test_rounds_count_the_labels_new_to_each_version(two_rounds):
    store, first, second, _ = two_rounds
    report = effort_report(store)
    assert [r.version for r in report.rounds] == [first.version, second.version]
    one, two = report.rounds
    assert one.parent == report.baseline and two.parent == first.version
    assert [c.case_id for c in one.labels] == ["case00", "case01"]
    assert [c.case_id for c in two.labels] == ["case02", "case03"]  # case00/01 were seen by the parent
    assert one.minutes == pytest.approx(4.0) and one.cumulative_minutes == pytest.approx(4.0)
    assert one.annotated_slices == 10
    # case03 has no record: its slices are the whole volume along the thickest axis (16), minutes unknown.
    assert [c.slices_from for c in two.labels] == ["effort", "volume"]
    assert two.annotated_slices == 3 + 16
    assert two.minutes is None and two.cumulative_minutes is None


def test_report_with_references_gives_dice_per_minute_and_writes_the_plot(two_rounds, tmp_path, capsys):
    store, first, second, references = two_rounds
    plot = tmp_path / "dice-per-minute.png"
    code = main(
        ["report", "--datastore", str(store.root), "--references", str(references), "--plot", str(plot), "--json"]
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    one, two = body["rounds"]
    assert one["dice"] is not None and body["baseline_dice"] is not None
    assert one["dice_gain"] == pytest.approx(one["dice"] - body["baseline_dice"])
    assert one["dice_per_minute"] == pytest.approx(one["dice_gain"] / 4.0)
    assert two["parent_dice"] == pytest.approx(one["dice"])
    assert two["minutes"] is None and two["dice_per_minute"] is None
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_report_table_says_unknown_minutes(two_rounds, capsys):
    store, first, second, _ = two_rounds
    assert main(["report", "--datastore", str(store.root)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(second.version))
    assert "unknown" in line


def test_plot_without_references_is_one_line_error(two_rounds, tmp_path, capsys):
    store = two_rounds[0]
    assert main(["report", "--datastore", str(store.root), "--plot", str(tmp_path / "p.png")]) != 0
    err = capsys.readouterr().err.strip()
    assert "--references" in err and "\n" not in err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    "record, words",
    [
        ({"active_seconds": 1e9, "idle_gap_threshold_s": 60, "voxels_changed": 0, "slices_changed": 0}, "active"),
        (
            {
                "active_seconds": 1,
                "idle_gap_threshold_s": 60,
                "voxels_changed": 0,
                "slices_changed": 0,
                "effects": ["a"] * 51,
            },
            "effects",
        ),
        (
            {
                "active_seconds": 1,
                "idle_gap_threshold_s": 60,
                "voxels_changed": 0,
                "slices_changed": 0,
                "opened_at": "yesterday",
            },
            "opened_at",
        ),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_effort_is_one_line(record, words):
    with pytest.raises(InvalidEffort) as caught:
        parse_effort(json.dumps(record))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_cli_label_submit_keeps_the_effort_record_and_refuses_a_bad_one(tmp_path, capsys):
    truth = make_sample_datastore(tmp_path / "ds", n_cases=2)
    store = Datastore(tmp_path / "ds")
    label = tmp_path / "case00-label.nii.gz"
    nib.save(nib.Nifti1Image(truth["case00"], sample_affine()), str(label))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"active_seconds": -5, "idle_gap_threshold_s": 60}))
    command = ["label", "submit", "--datastore", str(store.root), "case00", str(label), "--author", "dr-cli"]
    assert main(command + ["--effort", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert "effort record" in err and "active_seconds" in err and "\n" not in err
    assert not store.has_label("case00", LabelTag.FINAL)  # nothing stored

    good = tmp_path / "effort.json"
    good.write_text(json.dumps({**effort(120, 5), "client": "a script"}))
    assert main(command + ["--effort", str(good)]) == 0
    (record,) = [r for r in store.state.labels("final") if r.case_id == "case00"]
    assert record.extra[EFFORT]["active_seconds"] == 120 and record.extra[EFFORT]["client"] == "a script"
    audit = LeaseBook(store.state.path, root=store.root).audit("case00")
    assert audit[-1]["detail"][EFFORT]["slices_changed"] == 5


def test_a_sparse_label_counts_its_annotated_slices(tmp_path):
    truth = make_sample_datastore(tmp_path / "ds", n_cases=3)
    store = Datastore(tmp_path / "ds")
    config = ModelConfig.load(store.models.root / store.models.active_version() / "config.json")
    mask = np.zeros_like(truth["case00"])
    mask[:, :, [6, 9]] = 1  # two whole slices along axis 2, the thickest (spacing 1.5, 1.2, 2.0)
    label_path, mask_path = tmp_path / "label.nii.gz", tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(truth["case00"] * mask, sample_affine()), str(label_path))
    nib.save(nib.Nifti1Image(mask, sample_affine()), str(mask_path))
    submission = LabelSubmission("case00", label_path, "dr-sparse", "cli", mask=mask_path)
    submit_label(store, submission, config, store.models.active_version())
    adapted = adapt_datastore(store, OPTIONS)
    (only,) = effort_report(store).rounds
    assert only.version == adapted.version
    assert [(c.case_id, c.slices, c.slices_from, c.minutes) for c in only.labels] == [("case00", 2, "sparse", None)]
    assert only.minutes is None
