"""Issue 18: model activation is compare-and-swap, the gate's verdict is recorded with the version, and one
process writes to a datastore at a time."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from asfda.adapt.finetune import FinetuneOptions
from asfda.adapt.validation_gate import GateOptions
from asfda.cli.main import main
from asfda.core.errors import DatastoreBusy
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.writer_lock import lock_datastore
from asfda.loop import adapt as loop_adapt
from asfda.loop.adapt import AdaptOptions, adapt_datastore
from asfda.models.networks import build_network
from asfda.models.store import ModelStore
from engine_helpers import blob, shifted, tiny_config, write_nifti

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _labelled_store(root, labels: int = 3) -> Datastore:
    """A datastore with an imported v0001 and `labels` clinician labels (one unlabelled case)."""
    config = tiny_config()
    torch.manual_seed(0)
    store = Datastore(root)
    for i in range(labels + 1):
        label, image = blob(700 + i)
        write_nifti(store.images_dir / f"case{i}.nii.gz", shifted(image, label, i, 0.2), AFFINE)
        if i < labels:
            store.save_label(f"case{i}", LabelTag.FINAL, label, AFFINE, config.label_values, author="test")
    store.models.publish(build_network(config), config, parent=None, note="imported")
    return store


def _two_versions(root) -> ModelStore:
    config = tiny_config()
    models = ModelStore(root)
    v1 = models.publish(build_network(config), config, parent=None)
    models.publish(build_network(config), config, parent=v1)
    return models


# -- compare-and-swap ------------------------------------------------------------------------


def test_activate_if_swaps_only_while_the_expected_version_is_active(tmp_path):
    models = _two_versions(tmp_path / "models")
    assert models.active_version() == "v0002"
    assert not models.activate_if("v0001", expected_active="v0001")  # v0002 is active, not v0001
    assert models.active_version() == "v0002"
    assert models.activate_if("v0001", expected_active="v0002")
    assert models.active_version() == "v0001"
    models.activate("v0002")  # a person's activation stays unconditional
    assert models.active_version() == "v0002"


def test_a_finished_version_is_not_activated_over_a_rollback_and_says_why(tmp_path):
    models = _two_versions(tmp_path / "models")
    config = tiny_config()
    child = models.publish(build_network(config), config, parent="v0002", note="asfda adapt", activate=False)
    models.activate("v0001")  # the clinician rolled back while v0003 trained from v0002
    reason = models.activate_over_parent(child)
    assert models.active_version() == "v0001"
    assert "changed from its parent v0002 to v0001" in reason
    meta = models.meta(child)
    assert meta.not_activated == reason and "kept inactive: active version changed" in meta.note
    # With its parent still active the same call activates it.
    models.activate("v0002")
    assert models.activate_over_parent(child) == "" and models.active_version() == child


def test_a_person_choosing_the_parent_again_while_a_job_ran_is_not_undone(tmp_path):
    # Found by the invariant machine (test_model_label_invariants): comparing ACTIVE with the parent alone
    # cannot tell "nobody chose" from "rolled back and forth" or "confirmed the parent" while the job ran.
    models = _two_versions(tmp_path / "models")
    config = tiny_config()
    parent, choices = models.active_choice()
    assert parent == "v0002"
    child = models.publish(build_network(config), config, parent=parent, activate=False, started_at_choice=choices)
    models.activate("v0001")
    models.activate("v0002")  # back to the job's parent: a person's choice all the same
    reason = models.activate_over_parent(child)
    assert models.active_version() == "v0002"
    assert reason == models.meta(child).not_activated and "a person activated v0002 while v0003 was trained" in reason
    # Nobody chose since the next job started: it is activated as before.
    parent, choices = models.active_choice()
    other = models.publish(build_network(config), config, parent=parent, activate=False, started_at_choice=choices)
    assert models.activate_over_parent(other) == "" and models.active_version() == other


def test_an_adapt_round_keeps_a_rollback_and_back_made_while_it_trained(tmp_path, monkeypatch):
    store = _labelled_store(tmp_path / "ds")
    config = tiny_config()
    store.models.publish(build_network(config), config, parent="v0001", note="asfda adapt")  # v0002, active
    real_finetune = loop_adapt.finetune

    def finetune_during_a_rollback_and_back(*args, **kwargs):
        store.models.activate("v0001")
        store.models.activate("v0002")
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(loop_adapt, "finetune", finetune_during_a_rollback_and_back)
    options = AdaptOptions(FinetuneOptions(steps=1), gate=GateOptions(enabled=False))
    result = adapt_datastore(store, options)
    assert result.parent == "v0002" and store.models.active_version() == "v0002"
    assert not result.activated and "a person activated v0002 while v0003 was trained" in result.not_activated


def test_an_adapt_round_keeps_a_rollback_made_while_it_trained(tmp_path, monkeypatch):
    store = _labelled_store(tmp_path / "ds")
    config = tiny_config()
    store.models.publish(build_network(config), config, parent="v0001", note="asfda adapt")  # v0002, active
    real_finetune = loop_adapt.finetune

    def finetune_during_a_rollback(*args, **kwargs):
        store.models.activate("v0001")  # the clinician rejects v0002 while the round trains from it
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(loop_adapt, "finetune", finetune_during_a_rollback)
    options = AdaptOptions(FinetuneOptions(steps=1), gate=GateOptions(enabled=False))
    result = adapt_datastore(store, options)
    assert result.parent == "v0002" and result.version == "v0003"
    assert store.models.active_version() == "v0001"  # the rollback stands
    assert not result.activated and "to v0001 while v0003 was trained" in result.not_activated
    assert store.models.meta("v0003").not_activated == result.not_activated


def test_asfda_adapt_says_a_rollback_made_while_it_trained_kept_its_version_inactive(tmp_path, capsys, monkeypatch):
    store = _labelled_store(tmp_path / "ds", labels=1)
    config = tiny_config()
    store.models.publish(build_network(config), config, parent="v0001", note="asfda adapt")  # v0002, active
    real_finetune = loop_adapt.finetune

    def finetune_during_a_rollback(*args, **kwargs):
        store.models.activate("v0001")  # e.g. a script's own ModelStore: the CLI's lock is only for asfda commands
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(loop_adapt, "finetune", finetune_during_a_rollback)
    assert main(["adapt", "--datastore", str(store.root), "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "model v0003 published INACTIVE (the active version changed from its parent v0002 to v0001" in out
    assert "v0001 stays active; to use it anyway: asfda model activate --version v0003" in out
    store.models.activate("v0002")
    assert main(["adapt", "--datastore", str(store.root), "--steps", "1", "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["version"] == "v0004" and outcome["activated"] is False
    assert "from its parent v0002 to v0001" in outcome["not_activated"] and outcome["warnings"] == []


def test_a_running_worker_job_is_not_activated_over_a_rollback(tmp_path):
    from asfda.worker.jobstore import RUNNING, JobStore
    from asfda.worker.runner import JobRunner

    store = Datastore(tmp_path / "ds")
    config = tiny_config()
    v1 = store.models.publish(build_network(config), config, parent=None)
    v2 = store.models.publish(build_network(config), config, parent=v1)
    jobs = JobStore(store.root / "asfda.db")
    runner = JobRunner(store.root, jobs, store.models, "cpu")

    def finished_job(parent: str) -> str:
        job_id = jobs.submit("adapt", {})["job_id"]
        assert jobs.claim(job_id)
        version = store.models.publish(build_network(config), config, parent=parent, activate=False)
        gate = {"activate": True, "reason": "held-out Dice is not below the parent's", "verdict": "not worse"}
        jobs.report_result(job_id, {"version": version, "parent": parent, "gate": gate})
        assert jobs.get(job_id)["state"] == RUNNING
        return job_id

    job_id = finished_job(v2)
    store.models.activate(v1)  # rolled back while the job ran
    runner._finish(job_id, 0)
    result = jobs.get(job_id)["result"]
    assert store.models.active_version() == v1 == result["active_version"]
    assert result["activated"] is False and "to v0001 while v0003 was trained" in result["reason"]
    assert result["not_activated"] == result["reason"] == store.models.meta("v0003").not_activated
    # Without a rollback the next job's version becomes active as before.
    job_id = finished_job(v1)
    runner._finish(job_id, 0)
    assert jobs.get(job_id)["result"]["activated"] is True and store.models.active_version() == "v0004"


# -- the gate's verdict, recorded and shown --------------------------------------------------------


def test_an_advisory_worse_verdict_is_recorded_listed_and_warned(tmp_path, capsys):
    store = _labelled_store(tmp_path / "ds")
    root = str(store.root)
    # tolerance -1: no candidate can pass; with 3 labels (< 11) the "worse" verdict is advisory.
    options = AdaptOptions(FinetuneOptions(steps=1), gate=GateOptions(folds=3, tolerance=-1.0))
    result = adapt_datastore(store, options)
    # the model first: active at once, its advisory verdict pending until computed
    assert result.activated and result.gate["pending"] and store.models.active_version() == result.version
    assert store.models.meta(result.version).gate_summary() == "pending, advisory"
    result.gate = loop_adapt.advisory_verdict(store, result.version, options)
    assert result.gate["advisory"] and result.gate["computed_after_publish"] is True
    assert store.models.active_version() == result.version  # a worse advisory verdict changes nothing
    gate = store.models.meta(result.version).gate
    assert gate["verdict"] == "worse" and gate["advisory"] is True and gate["binding"] is False
    assert gate["candidate_dice"] == result.gate["candidate_dice"] and "advisory only" in gate["reason"]
    assert store.models.meta(result.version).gate_summary() == "worse, advisory"

    assert main(["model", "list", "--datastore", root]) == 0
    listing = capsys.readouterr().out
    assert "* v0002  parent=v0001" in listing and "gate: worse, advisory" in listing
    assert main(["model", "list", "--datastore", root, "--json"]) == 0
    rows = {row["version"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["v0002"]["gate"]["verdict"] == "worse" and rows["v0002"]["gate_summary"] == "worse, advisory"
    assert rows["v0001"]["gate"] == {} and rows["v0001"]["gate_summary"] == ""


def test_asfda_adapt_warns_about_an_advisory_worse_verdict_and_reports_it_in_json(tmp_path, capsys, monkeypatch):
    store = _labelled_store(tmp_path / "ds")
    root = str(store.root)
    real_adapt = loop_adapt.adapt_datastore

    def never_passing(store_, options, *args, **kwargs):
        options.gate.tolerance = -1.0  # the CLI has no tolerance option: every candidate is "worse"
        return real_adapt(store_, options, *args, **kwargs)

    real_verdict = loop_adapt.advisory_verdict

    def never_passing_verdict(store_, version, options, *args, **kwargs):
        options.gate.tolerance = -1.0
        return real_verdict(store_, version, options, *args, **kwargs)

    monkeypatch.setattr("asfda.loop.session.adapt_datastore", never_passing)
    monkeypatch.setattr("asfda.loop.session.advisory_verdict", never_passing_verdict)
    assert main(["adapt", "--datastore", root, "--steps", "1", "--json"]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.startswith("asfda adapt: warning:")]
    assert len(warning) == 1 and "judged v0002 worse than its parent v0001" in warning[0]
    assert "asfda model activate --version v0001" in warning[0]
    outcome = json.loads(captured.out)
    assert outcome["version"] == "v0002" and outcome["activated"] is True
    assert outcome["gate"]["verdict"] == "worse" and outcome["gate"]["advisory"] is True
    assert outcome["warnings"] == [warning[0].removeprefix("asfda adapt: warning: ")]
    # The text output warns the same way (a fresh datastore: v0002 saw every label, so a second round on this
    # one holds nothing out and is not gated).
    fresh = str(_labelled_store(tmp_path / "ds2").root)
    assert main(["adapt", "--datastore", fresh, "--steps", "1"]) == 0
    captured = capsys.readouterr()
    assert "asfda adapt: warning: the validation gate judged v0002 worse" in captured.err
    assert "new active model v0002 (parent v0001)" in captured.out


# -- one writer at a time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["model", "activate", "--datastore", "DS", "--version", "v0001"],
        ["rank", "--datastore", "DS", "--k", "1"],
        ["infer", "--datastore", "DS", "case1"],
        ["adapt", "--datastore", "DS", "--steps", "1"],
        ["label", "submit", "--datastore", "DS", "case1", "LABEL"],
    ],
)
def test_cli_writers_are_refused_while_a_worker_holds_the_datastore(tmp_path, capsys, command):
    store = _labelled_store(tmp_path / "ds", labels=1)
    config = tiny_config()
    store.models.publish(build_network(config), config, parent="v0001")  # v0002 active: activating v0001 changes it
    label = write_nifti(tmp_path / "label.nii.gz", blob(701)[0], AFFINE)
    replace = {"DS": str(store.root), "LABEL": str(label)}
    with lock_datastore(store.root, "the asfda worker on 127.0.0.1:8765"):
        code = main([replace.get(word, word) for word in command])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"in use by the asfda worker on 127.0.0.1:8765 (pid {os.getpid()}" in err
    assert store.models.active_version() == "v0002" and [v.version for v in store.models.versions()][-1] == "v0002"
    assert not store.has_label("case1", LabelTag.FINAL) and not store.has_label("case1", LabelTag.PREDICTION)
    assert store.state.scores("asfda") == []


def test_a_worker_cannot_start_while_a_cli_command_publishes(tmp_path):
    from asfda.worker.app import create_app
    from asfda.worker.settings import WorkerSettings

    store = _labelled_store(tmp_path / "ds", labels=1)
    staging = store.models.root / ".staging-of-a-live-cli-publish"
    with lock_datastore(store.root, "asfda adapt"):
        staging.mkdir()  # what a CLI adapt has on disk while it publishes
        settings = WorkerSettings.build(store.root, "127.0.0.1", 8765, "cpu", None, 1)
        with pytest.raises(DatastoreBusy, match=r"in use by asfda adapt \(pid \d+"):
            create_app(settings)
        assert staging.is_dir()  # the worker's start-up clean-up never ran
    lock_datastore(store.root, "test").close()  # released when the command ended: free again
