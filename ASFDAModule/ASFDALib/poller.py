"""Keep worker I/O off the GUI thread.

The widget owns one ``qt.QTimer``. Each tick it calls ``poke()`` on its pollers (which start a
fetch in a daemon thread only if none is in flight) and ``drain()`` on its task runner (which
runs finished tasks' continuations on the GUI thread, where MRML and Qt may be touched). The
GUI refresh itself reads only the cached values here, so a slow or dead worker never freezes
Slicer, unlike a plugin that does HTTP inside its refresh.
"""

import logging
import threading
import time

# Slicer's GUI thread holds the GIL between timer ticks, so background requests only advance while a
# tick runs Python: tick often (and sleep briefly, releasing the GIL) while anything is in flight.
IDLE_TICK_MS = 500
BUSY_TICK_MS = 50
GIL_YIELD_S = 0.005


def tickIntervalMs(busy):
    return BUSY_TICK_MS if busy else IDLE_TICK_MS


def yieldToBackgroundThreads(busy):
    """Let request threads run for a moment; only while some are in flight, so idle Slicer stays idle."""
    if busy:
        time.sleep(GIL_YIELD_S)


class CachedPoller:
    """Calls ``fetch()`` in the background at most every ``intervalS`` and caches the outcome.

    ``intervalS=None``: on demand only, a fetch starts only when forced (``poke(force=True)``).
    """

    def __init__(self, fetch, intervalS=2.0, clock=time.monotonic):
        self._fetch = fetch
        self.intervalS = intervalS
        self._clock = clock
        self._lock = threading.Lock()
        self._thread = None
        self._lastStart = None
        self.value = None
        self.error = None
        self.updatedAt = None
        self.generation = 0  # bumps on every completed fetch so the GUI can skip unchanged state

    @property
    def busy(self):
        return self._thread is not None and self._thread.is_alive()

    def poke(self, force=False):
        """Start a fetch if due and none is running; returns True when one started."""
        with self._lock:
            if self.busy:
                return False
            now = self._clock()
            if not force and (self.intervalS is None or self._lastStart is not None
                              and now - self._lastStart < self.intervalS):
                return False
            self._lastStart = now
            self._thread = threading.Thread(target=self._run, name="ASFDAPoller", daemon=True)
            self._thread.start()
            return True

    def _run(self):
        try:
            value, error = self._fetch(), None
        except Exception as e:  # cached and rendered as text; the poller must survive any failure
            value, error = None, str(e) or type(e).__name__
        with self._lock:
            if error is None:
                self.value = value
            self.error = error
            self.updatedAt = self._clock()
            self.generation += 1

    def wait(self, timeoutS=None):
        """Block until the running fetch ends (tests and shutdown only, never the GUI refresh)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeoutS)


class _Task:
    def __init__(self, function, onSuccess, onError):
        self.function = function
        self.onSuccess = onSuccess
        self.onError = onError
        self.result = None
        self.error = None
        self.done = threading.Event()


class TaskRunner:
    """Runs blocking calls (downloads, uploads) in threads; continuations run in ``drain()``."""

    def __init__(self):
        self._tasks = []
        self._lock = threading.Lock()

    @property
    def pending(self):
        with self._lock:
            return len(self._tasks)

    def submit(self, function, onSuccess=None, onError=None):
        task = _Task(function, onSuccess, onError)

        def run():
            try:
                task.result = function()
            except Exception as e:  # handed to onError on the GUI thread
                task.error = e
            task.done.set()

        with self._lock:
            self._tasks.append(task)
        threading.Thread(target=run, name="ASFDATask", daemon=True).start()
        return task

    def waitUntilFinished(self, timeoutS=None):
        """Block until every submitted call has returned (tests and shutdown only, never the GUI refresh)."""
        with self._lock:
            tasks = list(self._tasks)
        return all(task.done.wait(timeoutS) for task in tasks)

    def drain(self):
        """Run continuations of finished tasks, in submission order; call on the GUI thread.

        A continuation that raises (an error display re-raises, for example) is logged and does not
        stop the others: results that finished in the same tick are never lost.
        """
        with self._lock:
            finished = [t for t in self._tasks if t.done.is_set()]
            self._tasks = [t for t in self._tasks if not t.done.is_set()]
        for task in finished:
            try:
                if task.error is not None:
                    if task.onError is not None:
                        task.onError(task.error)
                elif task.onSuccess is not None:
                    task.onSuccess(task.result)
            except Exception:
                logging.exception("ASFDA: a background task's continuation failed")
        return len(finished)
