"""Starting job children and killing a whole process tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import psutil

KILL_WAIT_S = 10.0
JOB_MODULE = "asfda.worker.job"


def spawn_child(datastore: Path, device: str, job_id: Optional[str] = None) -> subprocess.Popen:
    """A job child; without `job_id` a warm spare that reads its job id from stdin."""
    # The absolute path: recovery recognises this datastore's children by it (asfda.worker.processes.is_job_child).
    command: List[str] = [sys.executable, "-m", JOB_MODULE, "--datastore", str(Path(datastore).resolve())]
    command += ["--device", device, "--parent-pid", str(os.getpid())]
    if job_id:
        command += ["--job-id", job_id]
    logs = Path(datastore) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Output before a job id arrives (import errors) goes here; the child then switches to the job's log.
    with open(logs / "spare.log", "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants, and wait until they are gone (they may hold GPU memory)."""
    try:
        root = psutil.Process(pid)
        victims = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for process in victims:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=KILL_WAIT_S)


def _named_datastore(process: psutil.Process, args: List[str]) -> Optional[Path]:
    """The --datastore a job child's command line names, resolved (relative to the child's folder)."""
    if "--datastore" not in args[:-1]:
        return None
    path = Path(args[args.index("--datastore") + 1])
    if not path.is_absolute():
        path = Path(process.cwd()) / path
    return path.resolve()


def is_job_child(pid: Optional[int], datastore: Path) -> bool:
    """True when `pid` still runs one of our job children on `datastore` (checked before killing leftovers at
    start-up): after pid reuse, a recorded pid may be another datastore's job, which must live on."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        args = process.cmdline()
        return JOB_MODULE in args and _named_datastore(process, args) == Path(datastore).resolve()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def log_tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else ""
