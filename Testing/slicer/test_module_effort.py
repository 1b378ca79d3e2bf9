"""The module's effort hooks, driven through the unmodified ASFDA.py widget: an edit feeds the recorder with the
Segment Editor's active effect, Submit sends the record (voxels changed against the opened prediction), and a
scene close keeps the record beside the copy of unsubmitted edits."""

import json
import types

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from test_module_harness import loadFirstCase, paint  # noqa: E402


def test_submit_sends_time_effects_and_voxels_changed(harness, worker):
    segmentationNode = loadFirstCase(harness, worker)
    harness.ui.segmentEditorWidget.setActiveEffect(types.SimpleNamespace(name="Paint"))
    paint(segmentationNode, "tumor")
    assert harness.ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.efforts, message="label upload with effort")
    record = worker.efforts["case-a"]
    assert record["effects"] == ["Paint"] and record["idle_gap_threshold_s"] == 60.0
    assert record["active_seconds"] >= 0 and record["client"] == "slicer/asfda-module"
    changed = int(np.count_nonzero(worker.labels["case-a"] != worker.prediction))
    assert record["voxels_changed"] == changed and changed > 0
    assert 1 <= record["slices_changed"] <= changed


def test_scene_close_keeps_the_effort_beside_the_copy(harness, worker, tmp_path):
    segmentationNode = loadFirstCase(harness, worker)
    harness.ui.segmentEditorWidget.setActiveEffect(types.SimpleNamespace(name="Erase"))
    paint(segmentationNode, "liver")
    slicer.mrmlScene.Clear(False)
    (kept,) = list((tmp_path / "scenes").rglob("effort.json"))
    record = json.loads(kept.read_text())
    assert record["case_id"] == "case-a" and record["effects"] == ["Erase"]
