"""The Slicer module's effort recorder: idle gaps excluded (fake clock), effects counted once each in first-use
order, voxels and slices changed against the label the case opened with (thickest-slice axis), the record
kept beside a backup and in a crash journal, and sent as the upload's `effort` field."""

import json
import time

import numpy as np
from ASFDALib.effort import EffortRecorder, labelChanges, thickestAxis


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def recorder(clock, **kwargs):
    return EffortRecorder(clock=clock, wallClock=lambda: "2026-12-03T09:00:00+00:00", **kwargs)


def test_idle_gaps_over_the_threshold_are_not_counted():
    clock = FakeClock()
    effort = recorder(clock)
    effort.caseShown("c1")
    clock.advance(10)
    effort.edited("Paint")
    clock.advance(300)  # away from the desk: not effort
    effort.edited("Paint")
    clock.advance(60)  # exactly the threshold still counts
    effort.edited("Erase")
    clock.advance(5)
    record = effort.submitting().finish()
    assert record["active_seconds"] == 75.0
    assert record["idle_gap_threshold_s"] == 60.0
    assert record["effects"] == ["Paint", "Erase"]
    assert record["voxels_changed"] is None and record["slices_changed"] is None  # no opened label known
    assert record["client"] == "slicer/asfda-module"


def test_edits_before_a_case_is_shown_count_nothing():
    clock = FakeClock()
    effort = recorder(clock)
    effort.edited("Paint")
    effort.caseShown("c1")
    assert effort.effects == [] and effort.activeSeconds == 0.0


def test_voxels_and_slices_changed_along_the_thickest_axis():
    opened = np.zeros((4, 5, 6), np.uint8)  # (k, j, i)
    submitted = opened.copy()
    submitted[1, 0:2, 0] = 1  # two voxels on k-slice 1
    submitted[3, 4, 5] = 2  # one voxel on k-slice 3
    assert thickestAxis((3.0, 1.0, 1.0)) == 0
    assert labelChanges(opened, submitted, 0) == (3, 2)
    assert labelChanges(opened, submitted, 2) == (3, 2)  # i-slices 0 and 5
    assert labelChanges(opened, submitted[:-1], 0) == (None, None)  # another grid: not comparable

    clock = FakeClock()
    effort = recorder(clock)
    effort.caseShown("c1", opened=opened, spacingKji=(3.0, 1.0, 1.0))
    clock.advance(2)
    pending = effort.submitting()
    effort.caseShown("c2")  # the next case may come before the upload thread runs
    record = pending.finish(submitted)
    assert (record["voxels_changed"], record["slices_changed"], record["active_seconds"]) == (3, 2, 2.0)


def test_record_kept_beside_a_backup_and_in_the_crash_journal(tmp_path):
    clock = FakeClock()
    effort = recorder(clock, journalFolder=str(tmp_path / "journal"), journalEveryS=30)
    effort.caseShown("c1")
    clock.advance(5)
    effort.edited("Paint")  # first edit: the journal is written (by the writer thread)
    effort.journalWriter.flush()
    journal = tmp_path / "journal" / "c1.effort.json"
    assert json.loads(journal.read_text())["active_seconds"] == 5.0
    clock.advance(10)
    effort.edited("Paint")  # within 30 s of the last write: not written again
    effort.journalWriter.flush()
    assert json.loads(journal.read_text())["active_seconds"] == 5.0
    clock.advance(25)
    effort.edited("Paint")
    effort.journalWriter.flush()
    assert json.loads(journal.read_text())["active_seconds"] == 40.0
    backup = effort.writeNextTo(str(tmp_path / "c1-20261203" / "c1-label.nrrd"))
    kept = json.loads(open(backup).read())
    assert kept["case_id"] == "c1" and kept["active_seconds"] == 40.0 and backup.endswith("c1-20261203/effort.json")
    effort.labelSubmitted("c1")
    effort.journalWriter.flush()
    assert not journal.exists()


def test_an_edit_costs_well_under_a_millisecond(tmp_path):
    # An edit a second for 10 minutes: the journal is queued every 30 s and written off this thread. The mean
    # is asserted (the maximum on a shared 2-core machine measures the scheduler, not this code).
    clock = FakeClock()
    effort = recorder(clock, journalFolder=str(tmp_path))
    effort.caseShown("c1", opened=np.zeros((64, 64, 64), np.uint8), spacingKji=(2.0, 1.0, 1.0))
    spent = 0.0
    for _ in range(600):
        clock.advance(1)
        start = time.perf_counter()
        effort.edited("Paint")
        spent += time.perf_counter() - start
    effort.journalWriter.flush()
    assert spent / 600 < 1e-3
    assert json.loads((tmp_path / "c1.effort.json").read_text())["active_seconds"] >= 570


def test_the_upload_sends_the_record_as_the_effort_field(tmp_path):
    from ASFDALib.client import WorkerClient

    sent = {}

    class Capturing(WorkerClient):
        def _open(self, method, path, body, headers, timeout):
            sent["body"] = body
            raise RuntimeError("stop")

    label = tmp_path / "label.nii.gz"
    label.write_bytes(b"\x1f\x8b")
    record = {"active_seconds": 12.5, "effects": ["Paint"]}
    try:
        Capturing("http://127.0.0.1:1").uploadLabel("c1", str(label), effort=record)
    except RuntimeError:
        pass
    assert b'name="effort"\r\n\r\n' + json.dumps(record).encode() in sent["body"]


def test_reopening_after_a_crash_continues_from_the_journal(tmp_path):
    clock = FakeClock()
    folder = str(tmp_path / "journal")
    before = recorder(clock, journalFolder=folder)
    before.caseShown("c1")
    clock.advance(20)
    before.edited("Paint")  # journal written; then Slicer crashes (nothing else runs)
    before.journalWriter.flush()
    after = recorder(clock, journalFolder=folder)
    clock.advance(3600)  # the restart: not effort
    after.caseShown("c1")
    clock.advance(10)
    after.edited("Erase")
    record = after.submitting().finish()
    assert record["active_seconds"] == 30.0 and record["effects"] == ["Paint", "Erase"]
    other = recorder(clock, journalFolder=folder)
    other.caseShown("c2")  # another case starts from zero
    assert other.activeSeconds == 0.0 and other.effects == []
    (tmp_path / "journal" / "c3.effort.json").write_text("{not json")
    other.caseShown("c3")  # an unreadable journal is ignored
    assert other.activeSeconds == 0.0
