"""The unmodified ASFDA.py widget, driven like a person would, on real MRML with a scripted worker.

See harness/ for what stands in for Slicer's Qt layer and scripted-module framework. Each test names the
finding of issue 11 it guards.
"""

import os

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import pythonqt, slicer_release, slicer_standins  # noqa: E402


def segmentationOf(harness):
    return harness.widget._parameterNode.currentSegmentation


def loadFirstCase(harness, worker, caseId="case-a"):
    harness.enter()
    harness.connect(worker.url)
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: harness.widget._parameterNode.currentCaseId == caseId, message="case loaded")
    return segmentationOf(harness)


def paint(segmentationNode, segmentName, value=True):
    """Change the source representation of one segment, as a paint stroke does."""
    segmentation = segmentationNode.GetSegmentation()
    segmentId = segmentation.GetSegmentIdBySegmentName(segmentName)
    volume = harnessVolume(segmentationNode)
    mask = np.zeros(slicer.util.arrayFromVolume(volume).shape, dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1 if value else 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volume)
    return mask


def harnessVolume(segmentationNode):
    scene = segmentationNode.GetScene()
    return next(
        scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
        if not scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").IsA("vtkMRMLLabelMapVolumeNode")
    )


@pytest.mark.parametrize("version", [(5, 8), (5, 10)])
def test_enter_exit_keeps_choices_and_binds_once(harness, version):
    """Finding 3 (stacked connectors on 5.8), 20 (machine settings in QSettings), 22 (datastore shows ".")."""
    if harness.release:
        pytest.skip("counts the stand-in wrapper's slots; test_module_releases.py does it for each release")
    slicer_standins.SLICER_VERSION[0] = version
    harness.enter()
    ui = harness.ui
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cuda")
    ui.budgetKSpinBox.value = 7
    for _ in range(3):
        harness.exit()
        harness.enter()
    assert ui.deviceComboBox.currentText == "cuda"
    assert ui.budgetKSpinBox.value == 7 and harness.widget._parameterNode.budgetK == 7
    # One binding per widget, however often the module was entered.
    wrapperSlots = [s for s in ui.budgetKSpinBox.valueChanged.slots if getattr(s, "__name__", "") == "onWidgetChanged"]
    assert len(wrapperSlots) == 1
    assert ui.datastorePathLineEdit.currentPath == ""
    # Per-computer choices are application settings, never parameters of a shareable scene.
    assert pythonqt.SETTINGS["ASFDA/device"] == "cuda"
    node = harness.widget._parameterNode.parameterNode
    assert node.GetParameter("device") == "" and node.GetParameter("workerUrl") == ""
    assert harness.slotErrors == []


def test_refused_job_and_failure_in_the_same_tick(harness, worker):
    """Finding 1 (a refused Adapt left its button disabled) and 2 (an error display lost other results)."""
    harness.enter()
    harness.connect(worker.url)
    ui, widget = harness.ui, harness.widget
    assert ui.adaptButton.click()  # refused: 409 no clinician labels yet
    assert not ui.adaptButton.enabled and not ui.cancelAdaptButton.enabled  # nothing to cancel yet
    assert ui.rankButton.click()
    assert widget.tasks.waitUntilFinished(10)
    harness.tick()  # both results arrive in this one tick
    assert any("no clinician labels yet" in d["text"] for d in harness.dialogs)
    assert widget.session.jobs.jobIds["adapt"] is None and ui.adaptButton.enabled
    # The rank reply was not lost to the error: a lost one leaves the job PENDING for good. (None when a /jobs
    # poll that started in the same tick already saw the scripted job finish.)
    assert widget.session.jobs.jobIds["rank"] in ("job-1", None)
    harness.tickUntil(lambda: widget.session.jobs.jobIds["rank"] is None and ui.rankButton.enabled,
                      message="rank finished")
    assert harness.slotErrors == []


def test_load_edit_submit_and_next_case(harness, worker):
    """Findings 5, 8, 10, 12, 17, and the DKD knowledge-source tooltip."""
    segmentationNode = loadFirstCase(harness, worker)
    widget, ui = harness.widget, harness.ui
    dkd = ui.worklistTable.item(0, harness.module.DKD_COLUMN)
    assert "pool_mean" in dkd.toolTip()
    editor = ui.segmentEditorWidget
    assert editor.segmentationNode() is segmentationNode
    assert not editor.segmentationNodeSelectorVisible and not editor.sourceVolumeNodeSelectorVisible
    names = [
        segmentationNode.GetSegmentation().GetNthSegment(i).GetName()
        for i in range(segmentationNode.GetSegmentation().GetNumberOfSegments())
    ]
    assert names == ["liver", "tumor"]

    segmentationNode.CreateClosedSurfaceRepresentation()  # "Show 3D" is not an edit
    assert not widget.edits.dirty
    painted = paint(segmentationNode, "tumor")
    assert widget.edits.dirty

    assert ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.labels, message="label upload")
    harness.tickUntil(lambda: not widget.edits.dirty, message="submitted")
    uploaded = worker.labels["case-a"]
    assert uploaded.shape == worker.prediction.shape
    assert set(np.unique(uploaded)) <= {0, 1, 2} and (uploaded == 2).sum() >= painted.sum()

    scene = slicer.mrmlScene
    nodesBefore = scene.GetNumberOfNodes()
    assert ui.nextCaseButton.click()
    harness.tickUntil(lambda: widget._parameterNode.currentCaseId == "case-b", message="next case")
    # The previous case's nodes are gone with their display nodes, and nothing keeps its segmentation.
    assert segmentationNode.GetScene() is None
    assert scene.GetNumberOfNodes() == nodesBefore
    observed = {obj for obj, *_ in widget.Observations} | {widget.editWatcher.observed}
    assert segmentationNode.GetSegmentation() not in observed
    assert segmentationNode.GetSegmentation() not in widget._VTKObservationMixin__observations
    assert harness.slotErrors == []


def test_empty_label_needs_a_confirmation(harness, worker):
    """Finding 10: a case without any structure can be submitted, after saying so."""
    segmentationNode = loadFirstCase(harness, worker)
    segmentation = segmentationNode.GetSegmentation()
    for name in ("liver", "tumor"):
        paint(segmentationNode, name, value=False)
    assert segmentation.GetNumberOfSegments() == 2
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert harness.ui.submitLabelButton.click()
    assert "Nothing is painted" in harness.dialogs[-1]["text"]
    harness.widget.tasks.waitUntilFinished(5)
    harness.tick()
    assert "case-a" not in worker.labels
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Ok)
    assert harness.ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.labels, message="negative case upload")
    assert not worker.labels["case-a"].any()
    assert worker.noStructure == {"case-a"}  # sent as the clinician's verdict, so the worker accepts and records it


def test_scene_close_informs_and_keeps_a_copy(harness, worker, tmp_path):
    """Finding 7: a scene close cannot be refused, so the module tells where the edits were saved."""
    segmentationNode = loadFirstCase(harness, worker)
    paint(segmentationNode, "liver")
    slicer.mrmlScene.Clear(False)
    closing = harness.dialogs[-1]
    assert closing["answer"] == pythonqt.QMessageBox.Ok and closing["icon"] == pythonqt.QMessageBox.Warning
    assert "not submitted" in closing["text"]
    assert harness.widget.backups.wait(10)  # written in the background while the warning shows
    backups = list((tmp_path / "scenes").rglob("case-a-label.*"))
    assert len(backups) == 1 and str(backups[0]) in closing["text"]
    assert not harness.widget.edits.dirty
    # The module is usable again on the new scene.
    assert harness.widget._parameterNode.currentCaseId == ""
    harness.tick()
    assert not harness.ui.submitLabelButton.enabled
    assert harness.slotErrors == []


def test_cleanup_stops_everything_and_removes_the_session_folder(harness, worker):
    """Finding 19 (temp folder never removed) and 21 (a guarded tick)."""
    loadFirstCase(harness, worker)
    workDir = harness.widget.session.workDir
    assert os.path.isdir(workDir)
    harness.widget.cleanup()
    assert not harness.widget.timer.isActive()
    assert not os.path.exists(workDir)
    assert harness.widget.Observations == []


def test_tick_is_fast_while_requests_are_in_flight(harness, worker):
    """Finding 13: background requests only advance during ticks in Slicer, so tick often while busy."""
    from ASFDALib import poller

    harness.enter()
    timer = harness.widget.timer
    assert timer.interval == poller.IDLE_TICK_MS
    harness.ui.workerUrlLineEdit.text = worker.url
    harness.ui.annotatorLineEdit.text = "Dr. Ada"
    harness.ui.connectButton.click()
    assert timer.interval == poller.BUSY_TICK_MS
    harness.connect(worker.url)
    for poll in harness.widget.pollers.values():
        poll.wait(5)
    harness.widget.tasks.waitUntilFinished(5)
    harness.tick()
    assert timer.interval == poller.IDLE_TICK_MS


def test_segment_editor_node_follows_scene_defaults(harness):
    """Finding 9: the editor node comes from the scene's default node (overwrite-mode preference)."""
    scene = slicer.mrmlScene
    scene.RemoveNode(scene.GetSingletonNode("ASFDA", "vtkMRMLSegmentEditorNode"))
    default = slicer.vtkMRMLSegmentEditorNode()
    default.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    scene.AddDefaultNode(default)
    node = harness.widget.logic.getSegmentEditorNode()
    assert node.GetOverwriteMode() == slicer.vtkMRMLSegmentEditorNode.OverwriteNone
    assert node.GetSingletonTag() == "ASFDA"


def test_category_uses_the_core_translation_context(harness):
    """Finding 18: only the core context merges the category with Slicer's own "Segmentation"."""
    assert ("qSlicerAbstractCoreModule", "Segmentation") in slicer_standins.TRANSLATION_CONTEXTS
    assert harness.modulePanel.categories == ["Segmentation"]


def test_module_self_test_is_light_by_default(harness, monkeypatch):
    """Finding 15: ASFDATest runs in seconds without a worker unless the full loop is asked for."""
    from ASFDALib import selftest

    monkeypatch.delenv(selftest.FULL_LOOP_VARIABLE, raising=False)
    monkeypatch.setattr(selftest, "runFullLoop", lambda *a, **k: pytest.fail("full loop ran"))
    harness.module.ASFDATest().runTest()
    assert selftest.fullLoopRequested({selftest.FULL_LOOP_VARIABLE: "1"})


def test_first_use_install_says_what_it_does_on_older_slicer(harness, monkeypatch, tmp_path):
    """Finding 16: on Slicer 5.8/5.10 pip_install blocks the GUI; a message stays up meanwhile."""
    if harness.release and slicer_release.version(harness.release) >= (5, 12):
        pytest.skip("5.12 installs through slicer.packaging.pip_ensure (test_module_releases.py)")
    from ASFDALib import dependencies

    seen = []

    def pipInstall(requirements):
        seen.append(
            (
                list(requirements),
                [box.text for box in pythonqt.VISIBLE_MESSAGE_BOXES],
                pythonqt.QApplication.overrideCursor() is not None,
            )
        )

    monkeypatch.setattr(slicer.util, "pip_install", pipInstall)
    monkeypatch.setitem(__import__("sys").modules, "slicer.packaging", None)  # 5.8/5.10 have none
    with pytest.raises(dependencies.DependencyError, match="Could not install"):
        dependencies.ensureWorkerRequirements({"not-a-real-package-asfda>=1": "not_a_real_package_asfda"},
                                              workFolder=str(tmp_path))
    assert harness.dialogs[-1]["text"].startswith("The ASFDA worker needs")
    ((requirements, boxes, waitCursor),) = seen
    # Issue 20: with constraints that hold what Slicer ships at its versions.
    assert requirements == ["-c", str(tmp_path / "asfda-constraints.txt"), "not-a-real-package-asfda>=1"]
    assert boxes and "several minutes" in boxes[0] and waitCursor
    assert pythonqt.VISIBLE_MESSAGE_BOXES == [] and pythonqt.QApplication.overrideCursor() is None
    assert slicer.app.mainWindow.statusBar().messages


def test_tick_is_guarded_against_reentry(harness):
    """Finding 21: a dialog opened by a continuation runs a nested event loop that fires the timer again."""
    tasks, seen = harness.widget.tasks, []

    def continuation(result):
        tasks.submit(lambda: 3, seen.append)
        tasks.waitUntilFinished(5)
        harness.tick()  # the nested event loop: must not run other continuations inside this one
        seen.append(result)

    tasks.submit(lambda: 1, continuation)
    tasks.submit(lambda: 2, seen.append)
    assert tasks.waitUntilFinished(5)
    harness.tick()
    assert seen == [1, 2]
    harness.tick()
    assert seen == [1, 2, 3]
    assert harness.slotErrors == []


class RunningLauncher:
    """A local worker that is running (the scripted worker), for the question before replacing it."""

    def __init__(self, url, datastore):
        self.url, self.datastore, self.stops = url, datastore, 0

    def isRunning(self):
        return True

    def stop(self):
        self.stops += 1


def test_start_local_worker_asks_before_stopping_the_running_one(harness, worker, monkeypatch):
    """Issue 20: "Start local worker" while one runs silently stopped it and the adaptation it was running."""
    from ASFDALib.launcher import WorkerStartError

    harness.enter()
    harness.connect(worker.url)
    widget, ui = harness.widget, harness.ui
    running = RunningLauncher(worker.url, worker.datastore)
    widget.session.launcher = running
    worker.jobs.insert(0, {"job_id": "job-7", "kind": "adapt", "state": "running",
                           "progress": {"phase": "train", "step": 3, "total": 10}, "result": None, "error": None})
    widget.pokeAll(force=True)
    harness.tickUntil(lambda: widget.session.jobs.running("adapt") == "job-7", message="running adapt job seen")
    ui.workerPythonLineEdit.text = "/opt/python"  # no first-use install in this test
    ui.datastorePathLineEdit.currentPath = worker.datastore
    started = []

    def startLocalWorker(*args):
        started.append(args)
        widget.session.stopLocalWorker()
        raise WorkerStartError("not started in this test")

    monkeypatch.setattr(widget.session, "startLocalWorker", startLocalWorker)
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Cancel)
    assert ui.startLocalWorkerButton.click()
    question = harness.dialogs[-1]["text"]
    assert "already running" in question and "job-7" in question and "adapt running: train 3/10" in question
    assert started == [] and running.stops == 0 and widget.session.launcher is running
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Ok)
    assert ui.startLocalWorkerButton.click()
    assert len(started) == 1 and running.stops == 1
    assert "not started in this test" in harness.dialogs[-1]["text"]
    # tryWithErrorDisplay shows the error and re-raises it, as Slicer's does: the only slot error.
    assert [type(error) for _, error in harness.slotErrors] == [WorkerStartError]


def pollOnce(harness, *names):
    """One completed poll of each named poller, rendered."""
    widget = harness.widget
    for name in names:
        poller = widget.pollers[name]
        generation = poller.generation
        poller.poke(force=True)
        poller.wait(5)
        harness.tickUntil(
            lambda p=poller, g=generation, n=name: p.generation > g and widget._rendered[n] == p.generation,
            message=f"{name} poll rendered",
        )


def test_polls_render_only_what_changed(harness, worker, monkeypatch):
    """Issue 20: the table was rebuilt every 3 s and the model combo every 5 s, changed or not."""
    clears = []
    original = pythonqt.QComboBox.clear
    monkeypatch.setattr(pythonqt.QComboBox, "clear", lambda combo: (clears.append(combo), original(combo))[1])
    harness.enter()
    harness.connect(worker.url)
    pollOnce(harness, "worklist", "models")
    widget, ui = harness.widget, harness.ui
    table, combo = ui.worklistTable, ui.modelVersionComboBox
    table.selectRow(1)  # the clinician's selection, on case-b
    widthResets, updates, comboClears = table.columnWidthResets, widget.worklistTable.cellUpdates, len(clears)
    assert widthResets == 1 and comboClears >= 1
    for _ in range(3):
        pollOnce(harness, "worklist", "models")
    assert widget.worklistTable.cellUpdates == updates and len(clears) == comboClears  # nothing changed: nothing done
    # One case changes (someone leases case-b): one cell of one row, in place; widths and selection stay.
    worker.leases["case-b"] = "Dr. Bea"
    pollOnce(harness, "worklist", "models")
    assert widget.worklistTable.cellUpdates == updates + 1
    assert table.item(1, harness.module.HELD_BY_COLUMN).text() == "Dr. Bea"
    assert "Leased until" in table.item(1, harness.module.HELD_BY_COLUMN).toolTip()
    assert table.columnWidthResets == widthResets and len(clears) == comboClears
    assert table.selectedItems()[0].data(pythonqt.Qt.UserRole) == "case-b"
    # A new model version refreshes the combo once, keeping the chosen version.
    combo.setCurrentIndex(combo.findData("v0001"))
    worker.models.append("v0002")
    pollOnce(harness, "models")
    pollOnce(harness, "models")
    assert len(clears) == comboClears + 1 and combo.count == 2 and combo.currentData == "v0001"
    # A re-sort moves rows: the selection follows its case.
    harness.ui.worklistTable.horizontalHeader().sectionClicked.emit(0)  # rank, now descending
    assert table.selectedItems()[0].data(pythonqt.Qt.UserRole) == "case-b"
    assert table.item(0, 1).text() == "case-b"
    assert harness.slotErrors == []


def test_downloads_go_once_read_and_stale_sessions_are_swept(harness, worker, tmp_path, monkeypatch):
    """Issue 20: downloaded CTs piled up in the system temp folder, one per case opened, forever after a crash."""
    workDir = harness.widget.session.workDir
    segmentationNode = loadFirstCase(harness, worker)
    assert os.listdir(workDir) == []  # the nodes hold the data: the downloaded files are gone
    paint(segmentationNode, "liver")
    assert harness.ui.submitLabelButton.click()
    harness.tickUntil(lambda: "case-a" in worker.labels and not harness.widget.edits.dirty, message="submitted")
    assert os.listdir(workDir) == []  # the label file went with the upload
    # A failed download leaves nothing either.
    worker.failPaths.add("/cases/case-b/infer")
    harness.widget.loadCase("case-b")
    harness.tickUntil(lambda: any("case-b" in d["text"] for d in harness.dialogs), message="failed download shown")
    assert os.listdir(workDir) == []
    # A session that crashed left its folder: the next session's logic removes it; a running one's stays.
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tempfile.tempdir)
    crashed = os.path.join(tempfile.tempdir, "asfda-slicer-4000000-abcd")
    os.makedirs(os.path.join(crashed, "case-a-12345678"))
    running = os.path.join(tempfile.tempdir, f"asfda-slicer-{os.getpid()}-efgh")
    os.makedirs(running)
    logic = harness.module.ASFDALogic()
    try:
        assert not os.path.exists(crashed) and os.path.isdir(running)
        assert os.path.dirname(logic.session.workDir) == tempfile.tempdir
    finally:
        logic.cleanup()
    assert not os.path.exists(logic.session.workDir)


def test_a_dropped_parameter_wrapper_survives_garbage_collection(harness):
    """Harness: a collection between a scene close and the next parameter write crashed the stand-in (segfault)."""
    import gc

    slicer.mrmlScene.Clear(False)  # the widget (not entered) drops its wrapper; the node keeps its observer
    gc.collect()
    harness.widget.logic.getParameterNode().budgetK = 5  # a ModifiedEvent reaches the dropped wrapper's observer
    assert harness.widget.logic.getParameterNode().budgetK == 5


def test_editor_takes_effects_registered_after_it_was_built(harness):
    """Issue 20: an extension's effect registered after the module's editor was created never showed in it."""
    editor, factory = harness.ui.segmentEditorWidget, slicer.qSlicerSegmentEditorEffectFactory.instance()
    assert "Paint" in editor.availableEffectNames() and "Local threshold" not in editor.availableEffectNames()
    assert factory.registerEffect(slicer_standins.SegmentEditorEffect("Local threshold"))
    assert "Local threshold" in editor.availableEffectNames()
    harness.widget.cleanup()  # no editor update once the module is gone
    factory.registerEffect(slicer_standins.SegmentEditorEffect("Wrap solidify"))
    assert "Wrap solidify" not in editor.availableEffectNames()
    assert factory.effectRegistered.slots == []


def storableNodesModifiedSinceRead(scene):
    collection = slicer.vtkCollection() if hasattr(slicer, "vtkCollection") else __import__("vtk").vtkCollection()
    scene.GetStorableNodesModifiedSinceRead(collection)
    return {collection.GetItemAsObject(i).GetName() for i in range(collection.GetNumberOfItems())}


def test_an_unedited_case_is_not_unsaved_data(harness, worker):
    """Issue 20: with no storage node every opened case, edited or not, was listed by "Save before exit?"."""
    segmentationNode = loadFirstCase(harness, worker)
    scene = slicer.mrmlScene
    volume = harness.widget._parameterNode.currentVolume
    assert not volume.GetModifiedSinceRead() and not segmentationNode.GetModifiedSinceRead()
    assert storableNodesModifiedSinceRead(scene) & {"case-a", "case-a label"} == set()
    paint(segmentationNode, "liver")
    assert storableNodesModifiedSinceRead(scene) & {"case-a", "case-a label"} == {"case-a label"}
    # Moving on removes the case with its storage nodes; nothing of it is left to list.
    pythonqt.ANSWERS.append(pythonqt.QMessageBox.Ok)
    assert harness.ui.nextCaseButton.click()
    harness.tickUntil(lambda: harness.widget._parameterNode.currentCaseId == "case-b", message="next case")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationStorageNode") == 1
    assert storableNodesModifiedSinceRead(scene) & {"case-b", "case-b label"} == set()


def test_unsubmitted_edits_are_kept_at_application_exit(harness, worker, tmp_path):
    """Issue 20: Slicer's exit closes no scene, so unsubmitted edits were lost without a copy."""
    segmentationNode = loadFirstCase(harness, worker)
    paint(segmentationNode, "liver")
    dialogsBefore = len(harness.dialogs)
    slicer.app.quit()  # aboutToQuit: the scene still holds the case
    backups = list((tmp_path / "scenes").rglob("case-a-label.*"))
    assert len(backups) == 1 and len(harness.dialogs) == dialogsBefore  # written, and nothing waits for a click
    harness.widget.cleanup()  # then Slicer cleans the module up: no second copy
    assert len(list((tmp_path / "scenes").rglob("case-a-label.*"))) == 1
    # The next session says where the edits are, once.
    harness.widget.showExitBackupOfLastSession()
    assert str(backups[0]) in harness.ui.caseStatusLabel.text and "case-a" in harness.ui.caseStatusLabel.text
    assert "ASFDA/exitBackup" not in pythonqt.SETTINGS


def test_cleanup_without_about_to_quit_still_keeps_the_edits(harness, worker, tmp_path):
    segmentationNode = loadFirstCase(harness, worker)
    paint(segmentationNode, "tumor")
    harness.widget.cleanup()
    assert len(list((tmp_path / "scenes").rglob("case-a-label.*"))) == 1


def test_opening_a_case_decodes_it_off_the_gui_thread(harness, worker, monkeypatch):
    """Issue 20: a CT was read (4-6 s) and histogrammed (1.7 s) on the GUI thread, freezing Slicer."""
    import threading

    from ASFDALib import case_reading, segmentation_io

    threads, original = [], case_reading.prepareCase
    monkeypatch.setattr(case_reading, "prepareCase",
                        lambda *a, **k: (threads.append(threading.current_thread()), original(*a, **k))[1])
    monkeypatch.setattr(segmentation_io, "_valuesWithoutName", lambda *a: pytest.fail("histogram on the GUI thread"))
    segmentationNode = loadFirstCase(harness, worker)
    assert threads and threading.main_thread() not in threads
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    volume = harness.widget._parameterNode.currentVolume
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), worker.image.T)
    assert not volume.GetDisplayNode().GetAutoWindowLevel()
    assert harness.slotErrors == []


def test_without_a_reader_library_slicer_reads_the_case_and_it_is_still_unedited(harness, worker, monkeypatch):
    """The fallback of a Slicer without SimpleITK and nibabel: storage-node reads, the segmentation written once."""
    from ASFDALib import case_reading

    monkeypatch.setattr(case_reading, "readerAvailable", lambda: None)
    segmentationNode = loadFirstCase(harness, worker)
    volume = harness.widget._parameterNode.currentVolume
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    assert not volume.GetModifiedSinceRead() and not segmentationNode.GetModifiedSinceRead()
    assert os.listdir(harness.widget.session.workDir) == []
    assert harness.slotErrors == []


class SlowLauncher(RunningLauncher):
    """A worker that ignores the polite request: its stop takes until ``release`` is set."""

    def __init__(self, url, datastore):
        import threading

        super().__init__(url, datastore)
        self.release, self.stopThread = threading.Event(), []

    def stop(self):
        import threading

        self.stopThread.append(threading.current_thread())
        assert self.release.wait(10)
        super().stop()


def test_stop_local_worker_never_holds_the_gui_thread(harness, worker):
    """Issue 20: stopping a worker that ignores the request blocked the GUI for ~10 s."""
    import threading

    harness.enter()
    widget, ui = harness.widget, harness.ui
    slow = SlowLauncher(worker.url, worker.datastore)
    widget.session.launcher = slow
    harness.tick()
    assert ui.stopLocalWorkerButton.enabled
    assert ui.stopLocalWorkerButton.click()  # returns while the tree is still being stopped
    assert widget.session.launcher is None and not ui.stopLocalWorkerButton.enabled
    assert ui.workerStatusLabel.text == "Stopping the local worker..."
    ui.datastorePathLineEdit.currentPath = worker.datastore
    ui.workerPythonLineEdit.text = "/opt/python"
    ui.annotatorLineEdit.text = "Dr. Ada"
    assert ui.startLocalWorkerButton.click()  # its port is still taken: said, nothing started
    assert "still stopping" in harness.dialogs[-1]["text"]
    slow.release.set()
    harness.tickUntil(lambda: not widget.session.stoppingLocalWorker, message="stopped")
    assert slow.stops == 1 and slow.stopThread[0] is not threading.main_thread()
    harness.tick()
    assert ui.workerStatusLabel.text == "Not connected"


def test_scene_close_lets_go_of_the_editor_and_end_close_attaches_it_again(harness, worker):
    """Issue 20: the embedded editor kept the closed scene's segmentation, volume and editor node."""
    segmentationNode = loadFirstCase(harness, worker)
    editor = harness.ui.segmentEditorWidget
    assert editor.segmentationNode() is segmentationNode
    oldEditorNode = editor.mrmlSegmentEditorNode()
    editor.setActiveEffect("Paint")
    editor.setupViewObservations()
    slicer.mrmlScene.Clear(False)
    assert editor.segmentationNode() is None and editor.sourceVolumeNode() is None
    assert editor.activeEffect() is None and not editor.viewsObserved
    editorNode = editor.mrmlSegmentEditorNode()  # the module is shown: attached again (a singleton survives Clear)
    assert editorNode is oldEditorNode and editorNode.GetScene() is slicer.mrmlScene
    assert editorNode.GetSegmentationNode() is None and editorNode.GetSourceVolumeNode() is None
