"""This Slicer's dealings with one worker: the connection, the local worker, the lease, the jobs, the requests.

``ASFDALogic`` owns one ``WorkerSession``; the widget asks it for what to run and renders what it keeps.
GUI-thread methods only read or change cached state; worker I/O happens in the calls they return (the
``*Request`` methods capture the client and their arguments on the GUI thread and return a function for a
background thread) and in ``openConnection``, ``waitForLocalWorker`` and the poller fetches, which run in
background threads too. Nothing here touches Qt or MRML except the file export of ``files`` (case_files.py).
"""

import shutil

from . import dependencies
from .case_files import CaseFiles
from .case_lease import RENEW_INTERVAL_S, CaseLease, isLoopbackUrl, release
from .client import WorkerClient, WorkerError, routeUnknown
from .job_tracker import JobTracker
from .launcher import WorkerLauncher
from .poller import CachedPoller
from .worker_token import localWorkerToken
from .worklist import Worklist

WORKLIST_POLL_S, MODELS_POLL_S = 3.0, 5.0


class WorkerSession:
    def __init__(self, moduleDir, workDir):
        self.moduleDir = moduleDir
        self.client = None
        self.info = None  # the worker's /info reply
        self.launcher = None  # the local worker this Slicer started, if any
        self._stopping = None  # a local worker whose process tree a background thread is stopping
        self.worklist = Worklist()
        self.lease = CaseLease()
        self.jobs = JobTracker()
        self.files = CaseFiles(workDir, lambda: self.info)

    @property
    def workDir(self):
        return self.files.workDir

    @property
    def labels(self):
        return self.files.labels

    @property
    def connected(self):
        return self.client is not None

    # -- connecting (background thread) -------------------------------------------------------

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

    def waitForLocalWorker(self, annotator="", timeoutS=180.0):
        launcher = self.launcher
        probe = WorkerClient(launcher.url, annotator=annotator)
        launcher.waitUntilHealthy(lambda: probe.health(timeout=2.0), timeoutS=timeoutS)  # /health needs no token
        # The worker wrote DIR/worker-token before it began to answer: read it now, so a loopback worker is not open.
        client = WorkerClient(launcher.url, launcher.token or localWorkerToken(launcher.datastore), annotator=annotator)
        return client, launcher.checkServesOurDatastore(client.info())

    # -- connecting (GUI thread) --------------------------------------------------------------

    def setConnection(self, client, info):
        """Use ``client`` from now on: a fresh worklist; the open case's lease is kept through it."""
        self.client, self.info = client, info
        self.worklist = Worklist(activeModelVersion=info.get("active_model_version"))
        self.lease.reconnected(client)

    def pollers(self):
        """The background polls of the connected worker, by name (the widget pokes them from its timer).

        ``report`` has no interval: it is fetched when the model versions change (each round is one).
        """
        client = self.client
        return {
            "worklist": CachedPoller(lambda: (client.worklist(), client.cases()), intervalS=WORKLIST_POLL_S),
            "jobs": self.jobs.follow(client),
            "models": CachedPoller(client.models, intervalS=MODELS_POLL_S),
            "lease": CachedPoller(self.lease.renew, intervalS=RENEW_INTERVAL_S),
            "report": CachedPoller(lambda: self.fetchReport(client), intervalS=None),
        }

    def updateWorklist(self, worklistReply, casesReply):
        self.worklist.updateFromWorklistReply(worklistReply)
        self.worklist.updateFromCasesReply(casesReply)

    # -- the local worker (GUI thread) --------------------------------------------------------

    def ensureLocalDependencies(self):
        return dependencies.ensureLocalWorkerDependencies(self.moduleDir)

    def startLocalWorker(self, datastorePath, port, pythonExecutable="", device="auto", token=""):
        import slicer

        datastore = str(datastorePath or "").strip()
        if datastore in ("", "."):
            raise ValueError("Choose a datastore folder first")
        if self.stoppingLocalWorker:
            raise ValueError("The previous local worker is still stopping; start again in a few seconds")
        self.stopLocalWorker()
        self.launcher = WorkerLauncher(
            datastore,
            port,
            pythonExecutable=pythonExecutable or None,
            token=token,
            device=None if device == "auto" else device,
            extraPythonPath=dependencies.workerPythonPath(self.moduleDir),
            # Slicer's own environment is tuned for Slicer; a worker in another Python needs the user's.
            env=slicer.util.startupEnvironment() if pythonExecutable else None,
        )
        self.launcher.start()
        return self.launcher

    def stopLocalWorker(self):
        """Stop the local worker now (GUI thread: up to ~10 s for a worker that ignores the request; Slicer's
        exit and a start over it). The Stop button uses ``stopLocalWorkerRequest``."""
        request = self.stopLocalWorkerRequest()
        if request is not None:
            request()

    def stopLocalWorkerRequest(self):
        """Detach the local worker now and return the call that stops its process tree (a background thread);
        None when none runs. The module reads as stopped at once; the tree is gone when the call returns."""
        launcher, self.launcher = self.launcher, None
        if launcher is None:
            return None
        if self.client is not None and self.client.url == launcher.url:
            self.client = None
        self._stopping = launcher
        return lambda: self._finishStop(launcher)

    def _finishStop(self, launcher):
        try:
            launcher.stop()
        finally:
            if self._stopping is launcher:
                self._stopping = None

    @property
    def stoppingLocalWorker(self):
        """A worker still being stopped holds its port: a new one started now would find it taken."""
        return self._stopping is not None

    # -- requests: built on the GUI thread, run in a background thread ------------------------

    def rankRequest(self, budgetK, slicesPerVolume=0):
        """Marks a rank as requested (its button stays off until the worker answers)."""
        client = self.client
        self.jobs.requested("rank")
        return lambda: client.rank(budgetK, slicesPerVolume=slicesPerVolume)

    def adaptRequest(self, steps=None, usePseudoLabels=True):
        client = self.client
        self.jobs.requested("adapt")
        return lambda: client.adapt(steps, usePseudoLabels)

    def cancelRequest(self, kind):
        """Cancels our running ``kind`` job only; None when none runs."""
        return self.jobs.cancelRequest(kind, self.client)

    def activateRequest(self, version):
        client = self.client
        return lambda: client.activateModel(version)

    def openCaseRequest(self, caseId):
        """Leases ``caseId`` and downloads it (a ``case_lease.Opening``)."""
        client, lease = self.client, self.lease
        return lambda: lease.open(client, caseId, self.files.fetchCase)

    def openNextCaseRequest(self, currentCaseId):
        """The worker's next case for this annotator, else the next free one in the worklist as shown now."""
        client, lease = self.client, self.lease
        candidates = self.worklist.candidates(currentCaseId, client.annotator)
        return lambda: lease.openNext(client, candidates, currentCaseId, self.files.fetchCase)

    def submitRequest(self, caseId, label, noStructure=False, effort=None):
        """Writes ``label`` (a ``PendingLabel``) and sends it naming the revision it was opened from.
        ``effort``: the ``SubmittedEffort`` of this submit."""
        client, lease = self.client, self.lease

        def send(client_, caseId_, path, maskPath=None, effort=None):
            return lease.submit(client_, caseId_, path, maskPath=maskPath, noStructure=noStructure, effort=effort)

        return lambda: self.files.uploadLabel(client, caseId, label, send=send, effort=effort)

    def giveBackRequests(self, leases):
        """One call per lease to give back (``CaseLease.left()`` / ``opened()``); failures are only logged."""
        return [lambda c=client, i=caseId: release(c, i) for client, caseId in leases]

    # -- fetches of the pollers (background thread) -------------------------------------------

    @staticmethod
    def fetchReport(client):
        """``GET /report``: per adaptation round the cases, slices and minutes; None from a worker without it."""
        try:
            return client.report()
        except WorkerError as error:
            if routeUnknown(error):
                return None
            raise

    # -- the end ------------------------------------------------------------------------------

    def close(self):
        """Slicer is closing the module: stop the local worker, remove this session's downloads."""
        self.stopLocalWorker()  # never leave a training run holding the GPU after Slicer exits
        shutil.rmtree(self.workDir, ignore_errors=True)
