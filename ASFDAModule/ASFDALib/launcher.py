"""Start and stop a local ASFDA worker process.

The worker runs as ``python -m asfda serve`` in its own session (process group), so stopping
it can take down the job subprocesses it spawns too, instead of leaving a training run holding
the GPU after Slicer closes. Its output goes to a log file rather than a pipe: nobody has to
drain it, and the tail explains a failed start. On Windows it starts without a console window,
as Slicer's own ``launchConsoleProcess`` does.

psutil is imported when stopping, not at load: it is one of the packages installed on first
use, so a module-level import would miss it for the whole session and stop only the
``PythonSlicer`` launcher, leaving the real worker holding the port, the GPU and the datastore.

A token given to the launcher reaches the worker in its environment, never on its command line.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .worker_token import TOKEN_ENV

# Windows process-creation flags (subprocess only defines them on Windows).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0


def freePort(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def slicerPythonExecutable():
    """Slicer's ``PythonSlicer`` launcher when available (it sets Slicer's library paths)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    candidate = os.path.join(os.path.dirname(sys.executable), "PythonSlicer")
    for path in (candidate, candidate + ".exe"):
        if os.path.isfile(path):
            return path
    return sys.executable


class WorkerStartError(RuntimeError):
    pass


def _loadPsutil():
    try:
        import psutil
    except ImportError:  # optional: os.killpg covers POSIX, taskkill covers Windows
        return None
    return psutil


def popenPlatformOptions(osName=None):
    """Popen keyword arguments: own process group, and on Windows no console window."""
    if (osName or os.name) != "nt":
        return {"start_new_session": True}
    options = {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    if hasattr(subprocess, "STARTUPINFO"):
        info = subprocess.STARTUPINFO()
        info.dwFlags |= STARTF_USESHOWWINDOW
        info.wShowWindow = SW_HIDE
        options["startupinfo"] = info
    return options


def treeKillCommand(pid):
    """Windows' own way to end a process and all its descendants, when psutil is missing."""
    return ["taskkill", "/T", "/F", "/PID", str(int(pid))]


def portInUse(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def sameFolder(a, b):
    try:
        return os.path.normcase(os.path.realpath(str(a))) == os.path.normcase(os.path.realpath(str(b)))
    except (OSError, ValueError):
        return False


class WorkerLauncher:
    def __init__(self, datastore, port, pythonExecutable=None, host="127.0.0.1", token="", device=None,
                 extraPythonPath=(), env=None, logPath=None):
        self.datastore = str(datastore)
        self.port = int(port)
        self.host = host
        self.token = token or ""
        self.device = device
        self.pythonExecutable = pythonExecutable or slicerPythonExecutable()
        self.extraPythonPath = [str(p) for p in extraPythonPath if p]
        self.baseEnv = dict(os.environ if env is None else env)
        self.logPath = logPath or os.path.join(tempfile.gettempdir(), f"asfda-worker-{self.port}.log")
        self.process = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def command(self):
        cmd = [self.pythonExecutable, "-m", "asfda", "serve", "--datastore", self.datastore,
               "--host", self.host, "--port", str(self.port)]
        if self.device:
            cmd += ["--device", self.device]
        return cmd  # never a token: every user of this computer can read a command line

    def environment(self):
        env = dict(self.baseEnv)
        if self.extraPythonPath:
            # Prepend so the bundled engine wins over any stale copy installed elsewhere.
            parts = self.extraPythonPath + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            env["PYTHONPATH"] = os.pathsep.join(parts)
        env["PYTHONUNBUFFERED"] = "1"
        if self.token:
            env[TOKEN_ENV] = self.token  # only this user (and root) can read a process's environment
        return env

    def start(self):
        if self.isRunning():
            return self.process
        if not os.path.isdir(self.datastore):
            raise WorkerStartError(f"Datastore folder does not exist: {self.datastore}")
        if portInUse(self.port, self.host):
            # A leftover worker (or anything else) there would answer /health in place of ours.
            raise WorkerStartError(
                f"Port {self.port} is already in use: stop the program using it (perhaps a worker left from "
                "an earlier session) or choose another local port")
        kwargs = popenPlatformOptions()
        log = open(self.logPath, "wb")
        try:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.environment(), **kwargs)
        finally:
            log.close()  # the child holds its own handle
        return self.process

    def isRunning(self):
        return self.process is not None and self.process.poll() is None

    def logTail(self, lines=15):
        try:
            with open(self.logPath, "rb") as f:
                text = f.read()[-8192:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def checkServesOurDatastore(self, info):
        """Refuse a worker whose /info names another datastore than the one this launcher started."""
        served = (info or {}).get("datastore")
        if not served or not sameFolder(served, self.datastore):
            raise WorkerStartError(
                f"The worker at {self.url} serves datastore {served!r}, not {self.datastore!r}: another "
                "worker holds this port. Stop it, or choose another local port")
        return info

    def waitUntilHealthy(self, health, timeoutS=60.0, intervalS=0.25):
        """Poll ``health()`` until it succeeds; fail early, with the log tail, if the process dies.

        Called from a background thread by the widget, never from the GUI thread.
        """
        deadline = time.monotonic() + timeoutS
        lastError = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise WorkerStartError(
                    f"Worker exited with code {self.process.returncode} during start-up. "
                    f"Log {self.logPath}:\n{self.logTail()}")
            try:
                return health()
            except Exception as e:  # not up yet; keep the reason for the timeout message
                lastError = e
            time.sleep(intervalS)
        raise WorkerStartError(f"Worker did not become healthy within {timeoutS:g} s ({lastError}). "
                               f"Log {self.logPath}:\n{self.logTail()}")

    def stop(self, timeoutS=5.0):
        """Terminate the worker and every process it started; kill what ignores the request."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            psutil = _loadPsutil()
            if psutil is not None:
                _stopTreeWithPsutil(psutil, process.pid, timeoutS)
            elif os.name != "nt":
                _stopGroupWithKillpg(process, timeoutS)
            else:
                subprocess.run(treeKillCommand(process.pid), capture_output=True, timeout=30,
                               **{k: v for k, v in popenPlatformOptions().items() if k != "start_new_session"})
        try:
            process.wait(timeoutS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeoutS)
        self.process = None


def _stopTreeWithPsutil(psutil, pid, timeoutS):
    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    # Children first, so the worker cannot respawn a job while being stopped.
    for proc in children + [parent]:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children + [parent], timeout=timeoutS)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeoutS)


def _stopGroupWithKillpg(process, timeoutS):
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or signal 0 keeps finding its zombie
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
