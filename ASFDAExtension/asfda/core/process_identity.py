"""Who owns a row another process may have to clean up: host, pid and the pid's start time (so a reused pid
is told apart from the process that wrote the row)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil

START_TIME_SLACK_S = 1.0  # psutil's create_time is rounded differently between calls on some platforms


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    def is_dead(self) -> bool:
        """True only when certain: on this host, and the pid is gone or now belongs to a later process. A row
        of another host (a datastore on a shared disk) is never judged dead from here."""
        if self.host != socket.gethostname():
            return False
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
            return abs(process.create_time() - self.started) > START_TIME_SLACK_S
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:  # another user's live process
            return False
