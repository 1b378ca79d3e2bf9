"""Job child process: `python -m asfda.worker.job --datastore DIR --device D --parent-pid P [--job-id ID]`.

Without --job-id it starts as a warm spare: it imports torch and MONAI first (seconds), then waits for
a job id on stdin, so a job starts without that delay. It exits when its parent worker dies, so an
orphan never keeps training on the GPU after a crash.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_FAILED, EXIT_ORPHANED = 0, 1, 70
EXIT_YIELDED = 75  # a rank stepped aside for interactive work: requeue it (it resumes from the signal cache)
WATCHDOG_INTERVAL_S = 0.2


def _watch_parent(parent_pid: int) -> None:
    import psutil

    def watch() -> None:
        while True:
            # On POSIX a dead parent re-parents us (getppid changes); pid_exists covers Windows.
            if (hasattr(os, "getppid") and os.name == "posix" and os.getppid() != parent_pid) or not (
                psutil.pid_exists(parent_pid)
            ):
                os._exit(EXIT_ORPHANED)
            time.sleep(WATCHDOG_INTERVAL_S)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _lower_priority() -> None:
    # On a machine where jobs share CPU cores with the API, the API must win: it answers the GUI.
    if hasattr(os, "nice"):
        try:
            os.nice(10)
        except OSError:
            pass


def log_path(datastore: Path, job_id: str) -> Path:
    return datastore / "logs" / f"job-{job_id}.log"


def _redirect_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_job(datastore: Path, job_id: str, device: str) -> int:
    from asfda.core.errors import AsfdaError
    from asfda.data.datastore import Datastore
    from asfda.worker.jobstore import JobStore, one_line
    from asfda.worker.tasks import TASKS, ProgressReporter

    store = Datastore(datastore, create=False)
    jobs = JobStore(store.root / "asfda.db")
    job = jobs.get(job_id)
    if job is None:
        print(f"job {job_id} not found", file=sys.stderr)
        return EXIT_FAILED
    print(f"job {job_id}: {job['kind']} {job['params']} on {device}", file=sys.stderr, flush=True)
    from asfda.scoring import Yielded

    try:
        result = TASKS[job["kind"]](store, job["params"], device, ProgressReporter(jobs, job_id))
    except Yielded as exc:
        print(f"job {job_id}: {exc}", file=sys.stderr, flush=True)
        return EXIT_YIELDED
    except Exception as exc:  # every failure is reported as a one-line message, the traceback goes to the log
        traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else ""
        if not isinstance(exc, AsfdaError):  # engine errors are worded for users; others need their type
            message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        jobs.report_error(job_id, one_line(message))
        return EXIT_FAILED
    jobs.report_result(job_id, result)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asfda.worker.job")
    parser.add_argument("--datastore", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--job-id")
    args = parser.parse_args(argv)
    _watch_parent(args.parent_pid)
    _lower_priority()
    # Warm up: the heavy imports happen before the job id arrives.
    import asfda.loop.adapt  # noqa: F401
    import asfda.loop.infer  # noqa: F401
    import asfda.loop.rank  # noqa: F401

    job_id = args.job_id or sys.stdin.readline().strip()
    if not job_id:  # stdin closed: the worker is shutting down or no longer needs a spare
        return EXIT_OK
    _redirect_output(log_path(args.datastore, job_id))
    return run_job(args.datastore, job_id, args.device)


if __name__ == "__main__":
    raise SystemExit(main())
