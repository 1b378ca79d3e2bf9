"""Starting and stopping a worker process tree, with a stand-in ``asfda`` that serves /health.

The stand-in shadows the real engine through the launcher's PYTHONPATH handling, so this test
checks the launcher itself (command line, environment, health wait, tree kill) quickly.
"""

import os
import sys
import textwrap
import time

import pytest
from ASFDALib import launcher as launcherModule
from ASFDALib.client import WorkerClient, WorkerError
from ASFDALib.launcher import WorkerLauncher, WorkerStartError, freePort
from ASFDALib.worker_session import WorkerSession
from ASFDALib.worker_token import WorkerTokenError

FAKE_MAIN = textwrap.dedent("""
    import argparse, json, os, secrets, subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()  # no --token: a command line shows to every user of the computer
    parser.add_argument("command")
    parser.add_argument("--datastore"); parser.add_argument("--host"); parser.add_argument("--port", type=int)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.datastore.endswith("crash"):
        print("fatal: cannot open datastore", flush=True)
        sys.exit(3)
    # As the real worker: DIR/worker-token (0600) written before it answers, then required beyond /health.
    tokenPath = os.path.join(args.datastore, "worker-token")
    if not os.path.exists(tokenPath):
        fd = os.open(tokenPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\\n")
    accepted = {open(tokenPath).read().strip(), os.environ.get("ASFDA_WORKER_TOKEN")} - {None, ""}
    # A job subprocess, as the real worker starts; stopping the worker must take it down too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.path.join(args.datastore, "child.pid"), "w") as f:
        f.write(str(child.pid))

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            bearer = self.headers.get("Authorization", "").replace("Bearer ", "", 1)
            if self.path != "/health" and bearer not in accepted:
                self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers()
                return
            body = json.dumps({"status": "ok", "argv": sys.argv[1:], "datastore": args.datastore,
                               "envToken": os.environ.get("ASFDA_WORKER_TOKEN")}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)

    HTTPServer((args.host, args.port), H).serve_forever()
""")

@pytest.fixture
def fakeEngine(tmp_path):
    package = tmp_path / "fake" / "asfda"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN)
    return tmp_path / "fake"


def pidAlive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def waitGone(pid, timeoutS=5.0):
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline and pidAlive(pid):
        time.sleep(0.05)
    return not pidAlive(pid)


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
@pytest.mark.parametrize("usePsutil", [True, False])
def test_start_health_and_stop_whole_tree(tmp_path, fakeEngine, monkeypatch, usePsutil):
    if not usePsutil:
        monkeypatch.setattr(launcherModule, "_loadPsutil", lambda: None)
    datastore = tmp_path / "store"
    datastore.mkdir()
    port = freePort()
    launcher = WorkerLauncher(datastore, port, pythonExecutable=sys.executable, token="tok",
                              extraPythonPath=[fakeEngine], logPath=str(tmp_path / "worker.log"))
    launcher.start()
    try:
        client = WorkerClient(launcher.url, token="tok", timeout=1.0)
        reply = launcher.waitUntilHealthy(client.health, timeoutS=20)
        # The token reaches the worker in its environment, never on its command line (issue 19).
        assert reply["argv"] == ["serve", "--datastore", str(datastore), "--host", "127.0.0.1", "--port", str(port)]
        assert reply["envToken"] == "tok" and "tok" not in launcher.command()
        assert os.getpgid(launcher.process.pid) == launcher.process.pid  # its own session
        deadline = time.monotonic() + 5
        while not (datastore / "child.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        childPid = int((datastore / "child.pid").read_text())
        workerPid = launcher.process.pid
    finally:
        launcher.stop(timeoutS=3)
    assert launcher.process is None
    assert waitGone(workerPid) and waitGone(childPid)


def test_early_exit_reports_log_tail(tmp_path, fakeEngine):
    datastore = tmp_path / "crash"
    datastore.mkdir()
    launcher = WorkerLauncher(datastore, freePort(), pythonExecutable=sys.executable,
                              extraPythonPath=[fakeEngine], logPath=str(tmp_path / "worker.log"))
    launcher.start()
    client = WorkerClient(launcher.url, timeout=0.5)
    with pytest.raises(WorkerStartError, match=r"exited with code 3[\s\S]*cannot open datastore"):
        launcher.waitUntilHealthy(client.health, timeoutS=20)
    launcher.stop()


def test_missing_datastore_is_refused(tmp_path):
    launcher = WorkerLauncher(tmp_path / "nope", freePort(), pythonExecutable=sys.executable)
    with pytest.raises(WorkerStartError, match="does not exist"):
        launcher.start()


def test_pythonpath_puts_bundled_engine_first(tmp_path):
    launcher = WorkerLauncher(tmp_path, 1234, pythonExecutable="py", extraPythonPath=["/bundle"],
                              env={"PYTHONPATH": "/other"}, device="cpu")
    env = launcher.environment()
    assert env["PYTHONPATH"] == os.pathsep.join(["/bundle", "/other"])
    assert launcher.command()[-2:] == ["--device", "cpu"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_local_worker_is_reached_with_the_datastore_token(tmp_path, fakeEngine):
    """Issue 19: a loopback worker is not open; the module reads DIR/worker-token (0600) to talk to it."""
    datastore = tmp_path / "store"
    datastore.mkdir()
    logic = WorkerSession(str(tmp_path), str(tmp_path / "downloads"))
    logic.launcher = WorkerLauncher(datastore, freePort(), pythonExecutable=sys.executable,
                                    extraPythonPath=[fakeEngine], logPath=str(tmp_path / "worker.log"))
    logic.launcher.start()
    try:
        client, info = logic.waitForLocalWorker("Dr. Ada", timeoutS=20)
        token = (datastore / "worker-token").read_text().strip()
        assert client.token == token and info["envToken"] is None
        with pytest.raises(WorkerError, match="401"):
            WorkerClient(logic.launcher.url, timeout=2.0).info()
        # Connect (no token typed) to the loopback worker of the chosen datastore: the same file.
        again, _ = logic.openConnection(logic.launcher.url, "", "Dr. Ada", str(datastore))
        assert again.token == token
        # The token of another datastore is refused with a reason, not a bare 401.
        other = tmp_path / "other"
        other.mkdir()
        (other / "worker-token").write_text("x" * 43 + "\n")
        os.chmod(other / "worker-token", 0o600)
        with pytest.raises(WorkerError, match="serves another datastore"):
            logic.openConnection(logic.launcher.url, "", "Dr. Ada", str(other))
        os.chmod(datastore / "worker-token", 0o644)
        with pytest.raises(WorkerTokenError, match="chmod 600"):
            logic.openConnection(logic.launcher.url, "", "Dr. Ada", str(datastore))
    finally:
        logic.stopLocalWorker()
