"""The version list names the validation gate's verdict and a rollback that kept a version inactive (issue 18)."""

import pytest
from ASFDALib.model_versions import versionLabel
from ASFDALib.worklist import JobProgress


def model(version, active=False, gateSummary="", notActivated=""):
    return {"version": version, "parent": None, "created": "", "metrics": {}, "note": "", "active": active,
            "gate": None, "gate_summary": gateSummary, "not_activated": notActivated}


def test_the_version_label_says_active_and_a_worse_gate_verdict():
    assert versionLabel(model("v0003", active=True, gateSummary="worse, advisory")) == (
        "v0003 (active; gate: worse, advisory)")
    assert versionLabel(model("v0002", gateSummary="worse, binding")) == "v0002 (gate: worse, binding)"
    # The normal case stays short: a passed gate and an imported version need no words.
    assert versionLabel(model("v0004", active=True, gateSummary="not worse, binding")) == "v0004 (active)"
    assert versionLabel(model("v0001")) == "v0001"
    # A worker older than this field sends none of the new keys.
    assert versionLabel({"version": "v0005", "active": True}) == "v0005 (active)"
    assert versionLabel(model("v0006", notActivated="the active version changed ...")) == (
        "v0006 (not activated: active version changed)")


def test_a_finished_adaptation_says_a_rollback_kept_it_inactive():
    reason = "the active version changed from its parent v0002 to v0001 while v0003 was trained"
    job = JobProgress.fromReply({"job_id": "a1", "kind": "adapt", "state": "succeeded",
                                 "result": {"version": "v0003", "activated": False, "reason": reason,
                                            "not_activated": reason}})
    assert job.adaptOutcome() == f"model v0003 was not activated: {reason}"


def test_the_module_shows_the_verdict_in_its_version_combo(harness):
    pytest.importorskip("slicer")
    harness.enter()
    harness.widget.renderModels([model("v0001"), model("v0002", active=True, gateSummary="worse, advisory")])
    combo = harness.ui.modelVersionComboBox
    labels = [combo.itemText(i) for i in range(combo.count)]
    assert labels == ["v0001", "v0002 (active; gate: worse, advisory)"]
    assert combo.findData("v0002") == 1 and "v0002" in harness.ui.activeModelLabel.text
