"""The unmodified module on each supported release's own framework files (issue 20, "the harness runs per release").

Each test runs once per tag in ``slicer_release.TAGS`` with that release's real ``parameterNodeWrapper``,
``ScriptedLoadableModule``, ``i18n`` and ``slicer.util`` (fetched by ``scripts/fetch_slicer_python.py``; a
test skips with the command to run where the cache lacks the tag), 5.8's colour-name behaviour played by
``harness/mrml58.py``, and the stand-ins only for the application and Qt.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import ModuleHarness, pythonqt, slicer_release  # noqa: E402


@pytest.fixture(params=slicer_release.TAGS)
def release(request, mrmlScene, tmp_path):
    tag = request.param
    if slicer_release.releaseFolder(tag) is None:
        pytest.skip(slicer_release.skipReason(tag))
    h = ModuleHarness(slicer, tmp_path / "scenes", release=tag)
    yield h
    h.close()


def segmentNames(segmentationNode):
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def test_the_release_files_are_the_ones_in_use(release):
    """Guards the harness itself: the module imported that tag's wrapper and utilities, not slicer-core's."""
    folder = str(slicer_release.releaseFolder(release.release))
    for name in ("util", "parameterNodeWrapper", "ScriptedLoadableModule", "i18n"):
        assert getattr(slicer, name).__file__.startswith(folder), name
    assert release.module.slicer.util is slicer.util
    assert release.module.ScriptedLoadableModuleWidget.__module__ == "slicer.ScriptedLoadableModule"
    assert type(release.widget._parameterNode).__module__ != "harness.slicer_standins"


def test_enter_exit_binds_once_and_keeps_values(release):
    """The real wrapper's connectGui/disconnectGui (5.8 returns no tag) with the module's setParameterNode."""
    ui = release.ui
    release.enter()
    ui.budgetKSpinBox.value = 7
    ui.usePseudoLabelsCheckBox.checked = False
    for _ in range(3):
        release.exit()
        release.enter()
    parameters = release.widget._parameterNode
    assert parameters.budgetK == 7 and parameters.usePseudoLabels is False
    assert ui.budgetKSpinBox.value == 7 and not ui.usePseudoLabelsCheckBox.checked
    # One live connection per bound widget however often the module was entered.
    assert len(ui.budgetKSpinBox.valueChanged.slots) == 1
    ui.budgetKSpinBox.value = 9  # the widget still writes through to the node
    assert parameters.budgetK == 9 and parameters.parameterNode.GetParameter("budgetK") == "9"
    assert release.slotErrors == []


def test_out_of_range_budget_is_refused_by_the_real_validator(release):
    release.enter()
    with pytest.raises(ValueError):
        release.widget._parameterNode.budgetK = 0
    assert release.widget._parameterNode.budgetK == 4


@pytest.fixture(params=["background", "slicer-io"])
def caseIo(request, monkeypatch):
    """How a case is read and a label written: the module's fast path (SimpleITK/nibabel in a thread, array
    snapshots) or Slicer's own IO through colour tables (no reader library; a segmentation the fast copy
    cannot take), the path finding 1 broke on 5.8."""
    if request.param == "slicer-io":
        from ASFDALib import case_reading, label_export

        def unavailable(*args, **kwargs):
            raise label_export.SnapshotUnavailable("forced by the test")

        monkeypatch.setattr(case_reading, "readerAvailable", lambda: None)
        monkeypatch.setattr(label_export, "takeSnapshot", unavailable)
    return request.param


def test_case_opens_with_model_names_and_submits_on_each_release(release, worker, caseIo):
    """Finding 1 per release: names survive 5.8's regeneration; SetNamesInitialised only where it exists."""
    release.enter()
    release.connect(worker.url)
    assert release.ui.nextCaseButton.click()
    release.tickUntil(lambda: release.widget._parameterNode.currentCaseId == "case-a", message="case loaded")
    segmentationNode = release.widget._parameterNode.currentSegmentation
    assert segmentNames(segmentationNode) == ["liver", "tumor"]  # not "R=... G=..." plus two empty ones
    prediction = worker.prediction
    assert release.ui.submitLabelButton.click()
    release.tickUntil(lambda: "case-a" in worker.labels, message="label upload")
    np.testing.assert_array_equal(worker.labels["case-a"], prediction)  # unedited: the values it came with
    calls = release.colorNames.calls
    if caseIo == "slicer-io" and release.colorNames.version < (5, 10):
        assert len(calls) == 2, "5.8 needs SetNamesInitialised(True) on the import's and the export's tables"
    else:
        assert calls == [], f"5.10+ logs an error for SetNamesInitialised (or no table was needed): {calls}"
    assert release.slotErrors == []
    assert not [d for d in pythonqt.DIALOGS if d["icon"] == pythonqt.QMessageBox.Critical]


def test_scene_close_rebinds_once_per_release(release):
    """Issue 20: on 5.8 (connectGui returns no tag) each scene close added a second set of GUI connectors."""
    ui = release.ui
    release.enter()
    for _ in range(3):
        slicer.mrmlScene.Clear(False)  # File > Close Scene while the module is shown
    assert len(ui.budgetKSpinBox.valueChanged.slots) == 1
    assert len(ui.usePseudoLabelsCheckBox.stateChanged.slots) == 1
    ui.budgetKSpinBox.value = 5
    assert release.widget._parameterNode.budgetK == 5  # bound to the new scene's parameter node
    assert release.widget._parameterNode.parameterNode.GetScene() is slicer.mrmlScene
    assert release.slotErrors == []


def test_module_entries_leave_one_gui_observer_per_release(release, monkeypatch):
    """Issue 20: on 5.10 every connect added a node observer that disconnectGui left (1/11/111 after 0/10/110
    entries). Counted as GUI refreshes per parameter-node change, through the release's own wrapper."""
    wrapperModule = slicer.parameterNodeWrapper.wrapper
    refreshes = []
    original = wrapperModule._updateGUIFromParameterNode
    monkeypatch.setattr(wrapperModule, "_updateGUIFromParameterNode",
                        lambda wrapper: (refreshes.append(1), original(wrapper)))
    release.enter()
    for _ in range(10):
        release.exit()
        release.enter()
    refreshes.clear()
    release.widget._parameterNode.parameterNode.Modified()
    assert len(refreshes) == 1


def test_no_to_the_install_question_installs_nothing_on_each_release(release, tmp_path, monkeypatch):
    """Issue 20 (minor): on 5.12 a "No" in the release's own pip_ensure surfaced as a traceback. Here the
    question comes from each release's real code (5.12: slicer.packaging.pip_ensure; 5.8/5.10:
    slicer.util.confirmOkCancelDisplay) and the answer is Cancel: nothing runs pip, the step reports No."""
    from ASFDALib import dependencies

    ran = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda *a, **k: ran.append(a))
    if hasattr(slicer, "packaging"):
        monkeypatch.setattr(slicer.packaging, "pip_install", lambda *a, **k: ran.append(a))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("")
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    answer = dependencies._install(slicer, ["asfda-surely-not-installed>=1"], str(constraints), confirm=True)
    assert answer is False and ran == []
    assert len(pythonqt.DIALOGS) == 1 and pythonqt.DIALOGS[0]["answer"] == pythonqt.QMessageBox.Cancel
    assert (release.release == "v5.12.3") == hasattr(slicer, "packaging")
