"""How long a clinician worked on a case, and what they changed: the effort record sent with a label.

Active time runs from the case being shown to Submit, as the sum of the gaps between successive events
(shown, each segmentation edit, submit) that are at most ``IDLE_GAP_S`` long. Why 60 s: correcting a model's
draft is a stream of strokes a few seconds apart, and paging through slices to check one rarely takes a
minute without a single stroke; a longer pause is the clinician away (the phone, another patient, lunch) and
counting it would make a case that was left open look expensive. The threshold goes with the record, so a
reader knows what was excluded.

``edited`` runs on every edit on the GUI thread: it only adds numbers and a name to a set (no numpy, no
file, no Qt), well under 1 ms. The voxel and slice counts are computed once, at submit, on the background
thread that writes the label. The record is also written next to a backup of unsubmitted edits and, at most
every ``JOURNAL_EVERY_S``, to a small journal file by a writer thread (a file write on a busy disk takes
about a millisecond: not on the GUI thread), so a crash keeps the time spent.
"""

import json
import os
import queue
import threading
import time
from datetime import datetime, timezone

import numpy as np

IDLE_GAP_S = 60.0
JOURNAL_EVERY_S = 30.0
MAX_EFFECTS = 50  # the worker refuses more (and names longer than 64 characters)
CLIENT = "slicer/asfda-module"


def _isoNow():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def thickestAxis(spacingKji):
    """The axis (of a (k, j, i) array) with the thickest slices: the one a clinician pages through."""
    spacing = np.asarray(spacingKji, dtype=float)
    return int(len(spacing) - 1 - np.argmax(spacing[::-1]))


def labelChanges(opened, submitted, axis):
    """(voxels that differ, slices along ``axis`` with at least one differing voxel) of two label arrays."""
    opened, submitted = np.asarray(opened), np.asarray(submitted)
    if opened.shape != submitted.shape:
        return None, None  # another grid: no voxel-wise comparison means anything
    changed = opened != submitted
    voxels = int(np.count_nonzero(changed))
    perSlice = np.moveaxis(changed, axis, 0).reshape(changed.shape[axis], -1).any(axis=1)
    return voxels, int(np.count_nonzero(perSlice))


def _writeJson(path, body):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(body, f)
    os.replace(temporary, path)  # a crash mid-write leaves the previous record, never half a file


class JournalWriter:
    """Writes and removes journal files in order on one daemon thread; ``flush`` waits for what is queued."""

    def __init__(self):
        self._queue = queue.Queue()
        self._thread = None
        self._lock = threading.Lock()

    def _run(self):
        while True:
            path, body = self._queue.get()
            try:
                if body is None:
                    if os.path.exists(path):
                        os.remove(path)
                else:
                    _writeJson(path, body)
            except OSError:
                pass  # a journal is a safety copy: a full disk must not break editing
            finally:
                self._queue.task_done()

    def start(self):
        """Start the thread (a few milliseconds on a busy machine: at case load, not on an edit)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ASFDA effort journal", daemon=True)
                self._thread.start()

    def put(self, path, body):
        """Queue ``body`` for ``path`` (None: remove the file)."""
        self.start()
        self._queue.put((path, body))

    def flush(self):
        self._queue.join()


class EffortRecorder:
    """One case at a time: ``caseShown``, ``edited`` per edit, ``record`` at submit."""

    def __init__(self, clock=time.monotonic, idleGapS=IDLE_GAP_S, journalFolder=None,
                 journalEveryS=JOURNAL_EVERY_S, wallClock=_isoNow, journalWriter=None):
        self.clock, self.idleGapS, self.wallClock = clock, float(idleGapS), wallClock
        self.journalWriter = journalWriter or JournalWriter()
        self.journalFolder, self.journalEveryS = journalFolder, float(journalEveryS)
        self.caseId = None
        self._reset()

    def _reset(self):
        self.activeSeconds = 0.0
        self.effects = []  # first use order: the record lists them so
        self._seen = set()
        self._last = None
        self._lastJournal = None
        self.openedAt = None
        self.opened = None
        self.spacingKji = None

    # -- GUI thread, cheap ----------------------------------------------------------------------

    def caseShown(self, caseId, opened=None, spacingKji=None):
        """A case is on screen; ``opened``: the label array (k, j, i) it was opened with, when known."""
        self._reset()
        self.caseId = caseId
        self.opened, self.spacingKji = opened, spacingKji
        self.openedAt = self.wallClock()
        self._resumeFromJournal()
        self._last = self.clock()

    def _resumeFromJournal(self):
        """A journal of this case left before Submit (Slicer crashed, or the case was left unsubmitted): its time and
        effects were spent on this label too, so they count."""
        path = self.journalPath()
        if path:
            self.journalWriter.start()
            self.journalWriter.flush()  # a write still queued for this case comes first
        if not path or not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf-8") as f:
                kept = json.load(f)
            seconds = float(kept.get("active_seconds") or 0.0)
            effects = [str(e) for e in kept.get("effects") or []]
        except (OSError, ValueError, TypeError, AttributeError):
            return  # an unreadable journal is no reason to refuse the case
        self.activeSeconds = max(0.0, seconds)
        for name in effects[:MAX_EFFECTS]:
            if name not in self._seen:
                self._seen.add(name)
                self.effects.append(name)
        self.openedAt = kept.get("opened_at") or self.openedAt

    def _tick(self):
        now = self.clock()
        if self._last is not None:
            gap = now - self._last
            if 0 <= gap <= self.idleGapS:
                self.activeSeconds += gap
        self._last = now
        return now

    def edited(self, effectName=None):
        """One segmentation edit, made with ``effectName`` (the editor's active effect) when known."""
        if self.caseId is None:
            return
        now = self._tick()
        if effectName and effectName not in self._seen and len(self.effects) < MAX_EFFECTS:
            name = str(effectName)[:64]
            self._seen.add(effectName)
            self.effects.append(name)
        if self.journalFolder and (self._lastJournal is None or now - self._lastJournal >= self.journalEveryS):
            self._lastJournal = now
            self.writeJournal()

    @staticmethod
    def openedFrom(prepared):
        """(opened label, spacing (k, j, i)) of a ``case_reading.PreparedCase``; (None, None) without one."""
        return (getattr(prepared, "opened", None), getattr(prepared, "spacingKji", None))

    def labelSubmitted(self, caseId):
        """The worker kept the label (and its record): the journal of the case is no longer needed."""
        if caseId == self.caseId:
            self.removeJournal()

    def caseClosed(self):
        self.removeJournal()
        self.caseId = None
        self._reset()

    # -- the record -----------------------------------------------------------------------------

    def submitting(self):
        """Submit pressed (GUI thread): the time so far, frozen with the opened label, for the upload thread
        (the next case may be shown before it runs)."""
        if self.caseId is not None:
            self._tick()
        return SubmittedEffort(self.record(stop=True), self.opened, self.spacingKji)

    def record(self, stop=True):
        """The effort record without the voxel counts (``SubmittedEffort.finish`` adds them)."""
        return {
            "active_seconds": round(self.activeSeconds, 3),
            "idle_gap_threshold_s": self.idleGapS,
            "voxels_changed": None,
            "slices_changed": None,
            "effects": list(self.effects),
            "opened_at": self.openedAt,
            "submitted_at": self.wallClock() if stop else None,
            "client": CLIENT,
        }

    def writeNextTo(self, labelPath):
        """Keep the record so far beside a backup of unsubmitted edits (``effort.json`` in its folder)."""
        path = os.path.join(os.path.dirname(labelPath), "effort.json")
        _writeJson(path, {"case_id": self.caseId, **self.record(stop=False)})  # now: Slicer may be exiting
        return path

    def journalPath(self):
        if not self.journalFolder or not self.caseId:
            return None
        return os.path.join(self.journalFolder, f"{self.caseId}.effort.json")

    def writeJournal(self):
        path = self.journalPath()
        if path:
            self.journalWriter.put(path, {"case_id": self.caseId, **self.record(stop=False)})

    def removeJournal(self):
        path = self.journalPath()
        if path:
            self.journalWriter.put(path, None)  # after any write still queued


class SubmittedEffort:
    """The record of one submit; ``finish`` compares the labels (background thread)."""

    def __init__(self, record, opened, spacingKji):
        self._record, self._opened, self._spacingKji = record, opened, spacingKji

    def finish(self, submitted=None):
        """The record, with voxels/slices changed when both the opened and the submitted label are known."""
        record = dict(self._record)
        if submitted is not None and self._opened is not None:
            axis = thickestAxis(self._spacingKji) if self._spacingKji is not None else 0
            record["voxels_changed"], record["slices_changed"] = labelChanges(self._opened, submitted, axis)
        return record
