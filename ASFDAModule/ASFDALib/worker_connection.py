"""The logic's connection half: connect to a worker, or start, wait for and stop a local one.

A mixin of ``ASFDALogic`` (which provides ``moduleDir()`` and the ``client``, ``info``, ``launcher`` and
``worklist`` attributes), kept apart so ASFDA.py stays a thin module file. ``openConnection`` and
``waitForLocalWorker`` run in a background thread; the others on the GUI thread.
"""

from . import dependencies
from .case_lease import isLoopbackUrl
from .client import WorkerClient, WorkerError
from .launcher import WorkerLauncher
from .worker_token import localWorkerToken
from .worklist import Worklist


class WorkerConnectionMixin:
    @staticmethod
    def openConnection(url, token="", annotator="", datastore=""):
        """Connect; to a loopback worker without a typed token, with the chosen datastore's own token."""
        chosen = str(datastore or "").strip() not in ("", ".")
        fromDatastore = not (token or "").strip() and isLoopbackUrl(url) and chosen
        if fromDatastore:
            token = localWorkerToken(datastore)
        client = WorkerClient(url, token, annotator=annotator)
        try:
            return client, client.info()
        except WorkerError as error:
            if error.status == 401 and fromDatastore:
                raise WorkerError(f"The worker at {url} refused the token of datastore {datastore}: it serves another "
                                  "datastore (choose that one), or enter its token", status=401) from None
            raise

    def setConnection(self, client, info):
        self.client, self.info = client, info
        self.worklist = Worklist(activeModelVersion=info.get("active_model_version"))

    def ensureLocalDependencies(self):
        return dependencies.ensureLocalWorkerDependencies(self.moduleDir())

    def startLocalWorker(self, datastorePath, port, pythonExecutable="", device="auto", token=""):
        import slicer

        datastore = str(datastorePath or "").strip()
        if datastore in ("", "."):
            raise ValueError("Choose a datastore folder first")
        self.stopLocalWorker()
        self.launcher = WorkerLauncher(
            datastore,
            port,
            pythonExecutable=pythonExecutable or None,
            token=token,
            device=None if device == "auto" else device,
            extraPythonPath=dependencies.workerPythonPath(self.moduleDir()),
            # Slicer's own environment is tuned for Slicer; a worker in another Python needs the user's.
            env=slicer.util.startupEnvironment() if pythonExecutable else None,
        )
        self.launcher.start()
        return self.launcher

    def waitForLocalWorker(self, annotator="", timeoutS=180.0):
        launcher = self.launcher
        probe = WorkerClient(launcher.url, annotator=annotator)
        launcher.waitUntilHealthy(lambda: probe.health(timeout=2.0), timeoutS=timeoutS)  # /health needs no token
        # The worker wrote DIR/worker-token before it began to answer: read it now, so a loopback worker is not open.
        client = WorkerClient(launcher.url, launcher.token or localWorkerToken(launcher.datastore), annotator=annotator)
        return client, launcher.checkServesOurDatastore(client.info())

    def stopLocalWorker(self):
        if self.launcher is not None:
            if self.client is not None and self.client.url == self.launcher.url:
                self.client = None
            self.launcher.stop()
            self.launcher = None
