"""Regression tests of issue 11's findings that live in ASFDALib (the widget's are in test_module_harness.py)."""

import socket
import subprocess
import sys

import pytest
from ASFDALib import launcher as launcherModule
from ASFDALib.edits import SegmentationEditWatcher, editEvents
from ASFDALib.launcher import WorkerLauncher, WorkerStartError, freePort
from ASFDALib.machine_settings import MachineSettings
from ASFDALib.poller import BUSY_TICK_MS, IDLE_TICK_MS, TaskRunner, tickIntervalMs


class DictSettings:
    def __init__(self, values=None):
        self.values = dict(values or {})

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):
        self.values[key] = value

    def contains(self, key):
        return key in self.values


def test_psutil_is_imported_when_stopping_not_at_load(tmp_path, monkeypatch):
    """Finding 4: psutil installed after the module loaded must still be used to stop the tree."""
    assert not hasattr(launcherModule, "psutil")
    calls = []
    monkeypatch.setattr(launcherModule, "_loadPsutil", lambda: calls.append(1))
    launcher = WorkerLauncher(tmp_path, freePort(), pythonExecutable=sys.executable)
    launcher.process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], **launcherModule.popenPlatformOptions()
    )
    launcher.stop(timeoutS=3)
    assert calls == [1] and launcher.process is None


def test_windows_options_hide_the_console_and_tree_kill_uses_taskkill():
    """Finding 14 (console window) and the psutil-less Windows stop of finding 4."""
    options = launcherModule.popenPlatformOptions("nt")
    assert options["creationflags"] & launcherModule.CREATE_NO_WINDOW
    assert options["creationflags"] & launcherModule.CREATE_NEW_PROCESS_GROUP
    assert launcherModule.popenPlatformOptions("posix") == {"start_new_session": True}
    assert launcherModule.treeKillCommand(1234) == ["taskkill", "/T", "/F", "/PID", "1234"]


def test_a_worker_serving_another_datastore_is_refused(tmp_path):
    """Finding 6: a leftover worker on the port answers /health; /info's datastore tells them apart."""
    ours = tmp_path / "ours"
    ours.mkdir()
    (tmp_path / "link").symlink_to(ours)
    launcher = WorkerLauncher(ours, freePort(), pythonExecutable=sys.executable)
    assert launcher.checkServesOurDatastore({"datastore": str(tmp_path / "link")})
    with pytest.raises(WorkerStartError, match="another worker holds this port"):
        launcher.checkServesOurDatastore({"datastore": str(tmp_path / "theirs")})
    with pytest.raises(WorkerStartError):
        launcher.checkServesOurDatastore({})


def test_start_refuses_a_port_already_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        launcher = WorkerLauncher(tmp_path, busy.getsockname()[1], pythonExecutable=sys.executable)
        with pytest.raises(WorkerStartError, match="already in use"):
            launcher.start()
    assert launcher.process is None


def test_drain_runs_every_continuation_even_when_one_raises():
    """Finding 2: an error display that re-raises must not lose results finished in the same tick."""
    runner, seen = TaskRunner(), []

    def failing(error):
        seen.append("error shown")
        raise error

    runner.submit(lambda: 1 / 0, onError=failing)
    runner.submit(lambda: "rank job", onSuccess=seen.append)
    assert runner.waitUntilFinished(5)
    assert runner.drain() == 2
    assert seen == ["error shown", "rank job"]


def test_tick_interval_follows_work_in_flight():
    """Finding 13."""
    assert tickIntervalMs(True) == BUSY_TICK_MS < 100 <= IDLE_TICK_MS == tickIntervalMs(False)


def test_machine_settings_round_trip_and_repair_bad_values():
    """Findings 20 and 22."""
    store = DictSettings()
    MachineSettings(workerUrl="http://gpu:8765", localPort=9000, device="cuda", datastorePath="/d").save(store)
    loaded = MachineSettings.load(store)
    assert (loaded.workerUrl, loaded.localPort, loaded.device, loaded.datastorePath) == (
        "http://gpu:8765",
        9000,
        "cuda",
        "/d",
    )
    bad = MachineSettings.load(
        DictSettings({"ASFDA/localPort": "80", "ASFDA/device": "tpu", "ASFDA/datastorePath": "."})
    )
    assert (bad.localPort, bad.device, bad.datastorePath) == (8765, "auto", "")
    assert MachineSettings.load(DictSettings({"ASFDA/localPort": "9001"})).localPort == 9001  # INI strings


def test_edit_watcher_ignores_show_3d_and_releases_the_segmentation(mrmlScene):
    """Findings 8 and 12 on a real vtkSegmentation."""
    import numpy as np
    import slicer

    node = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    volume = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6), np.uint8), name="v")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation = node.GetSegmentation()
    segmentId = segmentation.AddEmptySegment("", "liver")
    edits = []
    watcher = SegmentationEditWatcher(slicer.vtkSegmentation, lambda: edits.append(1))
    assert slicer.vtkSegmentation.RepresentationModified not in editEvents(slicer.vtkSegmentation)
    watcher.watch(segmentation)
    node.CreateClosedSurfaceRepresentation()
    assert edits == []
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1, 1, 1] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segmentId, volume)
    assert edits
    count = len(edits)
    segmentation.AddEmptySegment("", "tumor")
    assert len(edits) > count
    watcher.release()
    assert watcher.observed is None
    count = len(edits)
    segmentation.AddEmptySegment("", "more")
    assert len(edits) == count


def test_clear_selected_segments_is_an_edit(mrmlScene):
    """Issue 20: the segment table's "Clear selected segments" fires only RepresentationModified."""
    import numpy as np
    import slicer

    node = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    volume = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6), np.uint8), name="v")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentId = node.GetSegmentation().AddEmptySegment("", "liver")
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segmentId, volume)
    edits = []
    watcher = SegmentationEditWatcher(slicer.vtkSegmentation, lambda: edits.append(1))
    watcher.watch(node.GetSegmentation())
    node.CreateClosedSurfaceRepresentation()  # "Show 3D" stays no edit
    assert edits == []
    slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(node, segmentId)
    assert edits
    watcher.release()


def test_renaming_a_segment_is_an_edit_and_a_colour_is_not(mrmlScene):
    """Issue 20: a rename changes which model label a segment writes, and was not tracked."""
    import slicer

    node = mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    segmentId = segmentation.AddEmptySegment("", "Segment_1")
    edits = []
    watcher = SegmentationEditWatcher(slicer.vtkSegmentation, lambda: edits.append(1))
    watcher.watch(segmentation)
    segmentation.GetSegment(segmentId).SetColor(0.1, 0.2, 0.3)
    assert edits == []
    segmentation.GetSegment(segmentId).SetName("liver")
    assert edits
    watcher.release()
