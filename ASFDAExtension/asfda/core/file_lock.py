"""Exclusive advisory file locks: flock on POSIX, msvcrt on Windows; the OS drops them when the process dies."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator

if os.name == "nt":
    import msvcrt
else:
    import fcntl


def open_lock_file(path: Path) -> IO:
    # "a+" never truncates: another process may hold the lock on this very file.
    return open(Path(path), "a+")


def try_lock(handle: IO) -> bool:
    """Take the exclusive lock on `handle` without waiting; False when another holder has it."""
    try:
        if os.name == "nt":
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def wait_lock(handle: IO) -> None:
    """Take the exclusive lock on `handle`, waiting for the holder (on Windows, up to msvcrt's ~10 s)."""
    if os.name == "nt":
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock on `path` for the block: a short critical section shared by processes and threads
    (each call opens its own file description, so two threads of one process exclude each other too)."""
    handle = open_lock_file(path)
    try:
        wait_lock(handle)
        yield
    finally:
        handle.close()  # closing the file releases the lock
