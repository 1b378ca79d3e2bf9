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
from ASFDALib.client import WorkerClient
from ASFDALib.launcher import WorkerLauncher, WorkerStartError, freePort

FAKE_MAIN = textwrap.dedent("""
    import argparse, json, os, subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--datastore"); parser.add_argument("--host"); parser.add_argument("--port", type=int)
    parser.add_argument("--token", default=""); parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.datastore.endswith("crash"):
        print("fatal: cannot open datastore", flush=True)
        sys.exit(3)
    # A job subprocess, as the real worker starts; stopping the worker must take it down too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.path.join(args.datastore, "child.pid"), "w") as f:
        f.write(str(child.pid))

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            body = json.dumps({"status": "ok", "argv": sys.argv[1:]}).encode()
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
        assert reply["argv"] == ["serve", "--datastore", str(datastore), "--host", "127.0.0.1",
                                 "--port", str(port), "--token", "tok"]
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
