"""The session's download folder in the system temp folder, and the sweep of folders crashed sessions left.

A downloaded CT is a few hundred MB. Each Slicer session keeps its downloads in one folder named after its
process id (``asfda-slicer-<pid>-<random>``); each download and each label to upload has its own subfolder,
removed as soon as nothing needs it; the session folder goes at module cleanup. A session that crashed never
cleans up, so at start the folders of sessions whose process is gone are removed (and folders of the older,
pid-less naming once they are a day old). Another running Slicer's folder is left alone.
"""

import logging
import os
import shutil
import tempfile
import time
import uuid

PREFIX = "asfda-slicer-"
LEGACY_MAX_AGE_S = 24 * 3600  # folders named before the pid was in the name: only their age tells


def createSessionFolder(base=None):
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)


def ownerPid(name):
    """The process id in a session folder's name; None for the older naming (or another folder)."""
    head, sep, _ = name[len(PREFIX):].partition("-")
    return int(head) if name.startswith(PREFIX) and sep and head.isdigit() else None


def processAlive(pid):
    """True when a process with this id runs (on any platform; psutil when installed)."""
    if pid <= 0:
        return False
    try:
        import psutil  # installed on first use; optional here
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.pid_exists(pid)
    if os.name == "nt":
        return _windowsProcessAlive(pid)
    try:
        os.kill(pid, 0)  # signal 0 only checks (on Windows os.kill would terminate, hence the branch above)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _windowsProcessAlive(pid):
    import ctypes

    queryLimitedInformation, stillActive, accessDenied = 0x1000, 259, 5
    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(queryLimitedInformation, False, int(pid))
    if not handle:
        return ctypes.GetLastError() == accessDenied
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == stillActive
    finally:
        kernel32.CloseHandle(handle)


def removeStaleSessionFolders(base=None, isAlive=processAlive, now=None):
    """Remove session folders whose Slicer is gone; returns their paths."""
    base = base or tempfile.gettempdir()
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        pid = ownerPid(entry.name)
        try:
            stale = not isAlive(pid) if pid is not None else now - entry.stat().st_mtime > LEGACY_MAX_AGE_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                removed.append(entry.path)
                logging.info("ASFDA: removed %s, left by a Slicer session that ended without cleaning up", entry.path)
    return removed


def newSubfolder(sessionFolder, stem):
    """A fresh folder for one download or one upload, so two of the same case never share files."""
    path = os.path.join(sessionFolder, f"{stem}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    return path


def removeSubfolder(sessionFolder, path):
    """Remove a download or upload folder, never anything outside the session folder."""
    if not path:
        return
    session, target = os.path.realpath(sessionFolder), os.path.realpath(path)
    if os.path.dirname(target) == session:
        shutil.rmtree(target, ignore_errors=True)
