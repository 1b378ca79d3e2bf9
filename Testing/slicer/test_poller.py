"""Background polling and task continuations: the GUI thread never waits on the worker."""

import threading
import time

from ASFDALib.poller import CachedPoller, TaskRunner


def test_poke_returns_at_once_and_caches_value():
    release = threading.Event()
    calls = []

    def fetch():
        calls.append(1)
        release.wait(2)
        return {"state": "running"}

    poller = CachedPoller(fetch, intervalS=0.0)
    start = time.monotonic()
    assert poller.poke() is True
    assert time.monotonic() - start < 0.1
    assert poller.busy and poller.value is None
    assert poller.poke() is False  # one fetch in flight at most
    release.set()
    poller.wait(2)
    assert poller.value == {"state": "running"} and poller.error is None
    assert poller.generation == 1 and len(calls) == 1


def test_errors_are_cached_and_last_value_kept():
    outcomes = [{"ok": 1}, RuntimeError("worker went away")]

    def fetch():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    poller = CachedPoller(fetch, intervalS=0.0)
    poller.poke()
    poller.wait(2)
    poller.poke()
    poller.wait(2)
    assert poller.error == "worker went away"
    assert poller.value == {"ok": 1}
    assert poller.generation == 2


def test_interval_is_respected_unless_forced():
    now = [100.0]
    poller = CachedPoller(lambda: 1, intervalS=5.0, clock=lambda: now[0])
    assert poller.poke()
    poller.wait(2)
    now[0] += 1.0
    assert not poller.poke()
    assert poller.poke(force=True)
    poller.wait(2)
    now[0] += 5.0
    assert poller.poke()
    poller.wait(2)


def test_task_continuations_run_only_in_drain_on_caller_thread():
    runner = TaskRunner()
    seen = []
    mainThread = threading.get_ident()

    def onSuccess(result):
        seen.append(("ok", result, threading.get_ident() == mainThread))

    def onError(error):
        seen.append(("error", str(error), threading.get_ident() == mainThread))

    def fail():
        raise ValueError("upload refused")

    tasks = [runner.submit(lambda: 42, onSuccess, onError), runner.submit(fail, onSuccess, onError)]
    for task in tasks:
        task.done.wait(2)
    assert seen == []  # nothing touches the GUI until drain()
    assert runner.drain() == 2
    assert seen == [("ok", 42, True), ("error", "upload refused", True)]
    assert runner.pending == 0 and runner.drain() == 0
