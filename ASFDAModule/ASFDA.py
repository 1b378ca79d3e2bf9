"""ASFDA: rank unlabeled volumes, annotate the top few, adapt the model, in 3D Slicer.

The module is a thin client: all compute runs in the ASFDA worker (a separate process, local or
remote), so Slicer never imports torch. Worker calls run in background threads; a QTimer drains
their results on the GUI thread and the GUI is rendered from cached worker state only.
"""

import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from typing import Annotated

import qt
import slicer
from ASFDALib import dependencies, segmentation_io
from ASFDALib.client import WorkerClient
from ASFDALib.edits import EditTracker
from ASFDALib.launcher import WorkerLauncher, slicerPythonExecutable
from ASFDALib.poller import CachedPoller, TaskRunner
from ASFDALib.worklist import COLUMNS, SORT_KEYS, JobProgress, JobState, Worklist
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4
    def _(text):
        return text

TICK_MS = 500
DEVICES = ["auto", "cuda", "cpu"]


def resourceFile(moduleFile, relativePath):
    """Built extensions copy Resources/ next to the module; a source checkout keeps it one level up."""
    moduleDir = os.path.dirname(os.path.abspath(moduleFile))
    for root in (moduleDir, os.path.dirname(moduleDir)):
        candidate = os.path.join(root, "Resources", relativePath)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(moduleDir, "Resources", relativePath)


class ASFDA(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ASFDA")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["ASFDA Slicer contributors"]
        self.parent.helpText = _(
            "Adapt a segmentation model to your scans with few annotations. Rank unlabeled volumes "
            "(DKD knowledge gap + ASD difficulty), correct the model's prediction on the top few, then "
            "fine-tune on your labels plus reliable pseudo-labels. Any model version can be made active "
            "again. The scoring formulas are this project's reconstruction of arXiv 2509.10784.")
        self.parent.acknowledgementText = _(
            "Method: Yang, Marcus, Sotiras, arXiv 2509.10784. Built on 3D Slicer and MONAI.")
        # The default icon lookup only sees Resources/ next to this file, not a checkout's.
        self.parent.icon = qt.QIcon(resourceFile(__file__, "Icons/ASFDA.png"))


@parameterNodeWrapper
class ASFDAParameterNode:
    """Saved with the scene. The worker token is deliberately absent: scenes get shared."""

    workerUrl: str = "http://127.0.0.1:8765"
    localPort: Annotated[int, WithinRange(1024, 65535)] = 8765
    workerPython: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    datastorePath: pathlib.Path
    budgetK: Annotated[int, WithinRange(1, 1000)] = 4
    annotator: str = ""
    adaptSteps: Annotated[int, WithinRange(0, 100000)] = 0
    usePseudoLabels: bool = True
    currentCaseId: str = ""
    currentVolume: slicer.vtkMRMLScalarVolumeNode
    currentSegmentation: slicer.vtkMRMLSegmentationNode


class ASFDAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.tasks = TaskRunner()
        self.pollers = {}
        self._rendered = {}
        self._announced = set()
        self.sortKey, self.sortDescending = "rank", False
        self.rankJobId = None
        self.adaptJobId = None
        self._jobsPrimed = False
        self.edits = EditTracker()
        self._observedSegmentation = None

    def resourcePath(self, filename):
        return resourceFile(__file__, filename)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ASFDA.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ASFDALogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        table = self.ui.worklistTable
        table.setColumnCount(len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        table.verticalHeader().visible = False  # the Rank column already numbers the rows
        table.horizontalHeader().sectionClicked.connect(self.onHeaderClicked)
        table.cellDoubleClicked.connect(self.onCaseDoubleClicked)

        self.ui.connectButton.clicked.connect(self.onConnect)
        self.ui.startLocalWorkerButton.clicked.connect(self.onStartLocalWorker)
        self.ui.stopLocalWorkerButton.clicked.connect(self.onStopLocalWorker)
        self.ui.rankButton.clicked.connect(self.onRank)
        self.ui.nextCaseButton.clicked.connect(self.onNextCase)
        self.ui.submitLabelButton.clicked.connect(self.onSubmitLabel)
        self.ui.adaptButton.clicked.connect(self.onAdapt)
        self.ui.cancelJobButton.clicked.connect(self.onCancelJob)
        self.ui.activateModelButton.clicked.connect(self.onActivateModel)

        self.ui.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.initializeParameterNode()
        # Always ticking: jobs finish while the clinician works in other modules.
        self.timer = qt.QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.onTimerTick)
        self.timer.start()
        self.updateGUIFromCache()

    def cleanup(self):
        self.timer.stop()
        self.removeObservers()
        self.logic.stopLocalWorker()  # never leave a training run holding the GPU after Slicer exits

    def enter(self):
        self.initializeParameterNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self):
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.confirmLeavingCase(None)  # the scene closes anyway: at least keep a copy of the edits
        self.edits.caseClosed()
        self._observedSegmentation = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.getSegmentEditorNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- background work ---------------------------------------------------------------------

    def runInBackground(self, function, onSuccess, errorMessage):
        def onError(error):
            with slicer.util.tryWithErrorDisplay(errorMessage):
                raise error
        self.tasks.submit(function, onSuccess, onError)

    def startPolling(self):
        client = self.logic.client
        self.pollers = {
            "worklist": CachedPoller(lambda: (client.worklist(), client.cases()), intervalS=3.0),
            "jobs": CachedPoller(client.jobs, intervalS=1.0),
            "models": CachedPoller(client.models, intervalS=5.0),
        }
        self._rendered = {}
        self._jobsPrimed = False
        self.pokeAll(force=True)

    def pokeAll(self, force=False):
        for poller in self.pollers.values():
            poller.poke(force=force)

    def onTimerTick(self):
        self.tasks.drain()
        self.pokeAll()
        self.updateGUIFromCache()

    # -- rendering (cached state only, no worker I/O) ------------------------------------------

    def _fresh(self, name):
        poller = self.pollers.get(name)
        if poller is None or poller.generation == self._rendered.get(name):
            return None
        self._rendered[name] = poller.generation
        return poller

    def updateGUIFromCache(self):
        connected = self.logic.client is not None
        jobs = self._fresh("jobs")
        if jobs is not None:
            self.renderJobs(jobs.value or [])
        worklist = self._fresh("worklist")
        if worklist is not None and worklist.value is not None:
            self.logic.updateWorklist(*worklist.value)
            self.renderWorklist()
        models = self._fresh("models")
        if models is not None and models.value is not None:
            self.renderModels(models.value)
        errors = [p.error for p in self.pollers.values() if p.error]
        if not connected:
            status = _("Not connected")
        elif errors:
            status = _("Worker not answering: {error}").format(error=errors[0])
        else:
            info = self.logic.info or {}
            status = _("Connected to {url} ({device}, model {version})").format(
                url=self.logic.client.url, device=info.get("device", "?"),
                version=self.logic.worklist.activeModelVersion or info.get("active_model_version") or "none")
        self.ui.workerStatusLabel.text = status
        p = self._parameterNode
        caseOpen = bool(p and p.currentCaseId and p.currentSegmentation)
        running = {jobId for jobId in (self.rankJobId, self.adaptJobId) if jobId}
        self.ui.stopLocalWorkerButton.enabled = self.logic.launcher is not None
        self.ui.rankButton.enabled = connected and self.rankJobId is None
        self.ui.nextCaseButton.enabled = connected and bool(self.logic.worklist.rows)
        self.ui.submitLabelButton.enabled = connected and caseOpen
        self.ui.adaptButton.enabled = connected and self.adaptJobId is None
        self.ui.cancelJobButton.enabled = connected and bool(running)
        self.ui.activateModelButton.enabled = connected and self.ui.modelVersionComboBox.count > 0

    def renderWorklist(self):
        table = self.ui.worklistTable
        rows = self.logic.worklist.sortedRows(self.sortKey, self.sortDescending)
        table.setRowCount(len(rows))
        current = self._parameterNode.currentCaseId if self._parameterNode else ""
        for r, row in enumerate(rows):
            for c, text in enumerate(row.cells()):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, row.caseId)
                if row.stale:
                    item.setToolTip(_("Scored by model {version}, not the active one: rank again").format(
                        version=row.modelVersion))
                if row.caseId == current:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def renderJobs(self, jobs):
        if not self._jobsPrimed:
            # Jobs that ended before we connected are history, not news to announce.
            self._announced.update(j["job_id"] for j in jobs if JobState(j["state"]).finished)
            self._jobsPrimed = True
        latest = {}
        for job in jobs:  # newest first: keep the newest of each kind
            latest.setdefault(job.get("kind"), job)
        for kind, bar, attr in (("rank", self.ui.rankProgressBar, "rankJobId"),
                                ("adapt", self.ui.adaptProgressBar, "adaptJobId")):
            job = latest.get(kind)
            if job is None:
                continue
            progress = JobProgress.fromReply(job)
            bar.value = progress.percent
            bar.setFormat(progress.describe())
            setattr(self, attr, None if progress.state.finished else progress.jobId)
            if kind == "adapt":
                self.ui.adaptStatusLabel.text = progress.describe()
            if progress.state.finished and progress.jobId not in self._announced:
                self._announced.add(progress.jobId)
                self.onJobFinished(progress)

    def renderModels(self, models):
        combo = self.ui.modelVersionComboBox
        chosen = combo.currentText
        combo.blockSignals(True)
        combo.clear()
        active = None
        for model in models:
            label = model["version"] + (" (active)" if model.get("active") else "")
            combo.addItem(label, model["version"])
            if model.get("active"):
                active = model["version"]
        index = combo.findData(chosen.split(" ")[0]) if chosen else -1
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)
        if active:
            self.logic.worklist.setActiveModelVersion(active)
        self.ui.activeModelLabel.text = _("Active model: {version}").format(version=active or "none")

    def onJobFinished(self, progress):
        if progress.kind == "adapt" and progress.state == JobState.SUCCEEDED:
            version = (progress.result or {}).get("version") or (progress.result or {}).get("model_version")
            slicer.util.showStatusMessage(
                _("Adaptation finished: model {version} is active. Rank again to refresh the scores.").format(
                    version=version or "(new)"), 8000)
        elif progress.state == JobState.FAILED:
            slicer.util.errorDisplay(_("Worker job failed: {text}").format(text=progress.describe()))
        self.pokeAll(force=True)

    # -- actions -----------------------------------------------------------------------------

    def onConnected(self, connection):
        self.logic.setConnection(*connection)
        if self._parameterNode:
            self._parameterNode.workerUrl = self.logic.client.url
        self.startPolling()

    def onConnect(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to connect to the worker."), waitCursor=True):
            url, token = self.ui.workerUrlLineEdit.text, self.ui.workerTokenLineEdit.text
            self.ui.workerStatusLabel.text = _("Connecting to {url}...").format(url=url)
            self.runInBackground(lambda: self.logic.openConnection(url, token), self.onConnected,
                                 _("Failed to connect to the worker."))

    def onStartLocalWorker(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start the local worker."), waitCursor=True):
            p = self._parameterNode
            if not p.workerPython and not self.logic.ensureLocalDependencies():
                return
            launcher = self.logic.startLocalWorker(p.datastorePath, p.localPort, p.workerPython, p.device,
                                                   self.ui.workerTokenLineEdit.text)
            self.ui.workerStatusLabel.text = _("Starting local worker (log: {log})...").format(log=launcher.logPath)
            self.runInBackground(self.logic.waitForLocalWorker, self.onConnected,
                                 _("The local worker did not start."))

    def onStopLocalWorker(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to stop the local worker."), waitCursor=True):
            self.logic.stopLocalWorker()
            self.pollers = {}
            self.rankJobId = self.adaptJobId = None

    def onRank(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start ranking."), waitCursor=True):
            client, k = self.logic.client, self._parameterNode.budgetK
            self.rankJobId = "pending"
            self.runInBackground(lambda: client.rank(k), self.onJobStarted, _("Failed to start ranking."))

    def onJobStarted(self, job):
        setattr(self, "rankJobId" if job.get("kind") == "rank" else "adaptJobId", job["job_id"])
        self.pokeAll(force=True)

    def onHeaderClicked(self, column):
        key = SORT_KEYS[column]
        self.sortDescending = not self.sortDescending if key == self.sortKey else key in ("score", "dkd", "asd")
        self.sortKey = key
        self.renderWorklist()

    def onCaseDoubleClicked(self, row, column):
        item = self.ui.worklistTable.item(row, 0)
        if item is not None:
            self.loadCase(item.data(qt.Qt.UserRole))

    def onNextCase(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to load the next case."), waitCursor=True):
            caseId = self.logic.worklist.nextCase(afterCaseId=self._parameterNode.currentCaseId or None)
            if caseId is None:
                slicer.util.infoDisplay(_("Every case of the worklist is labeled. Adapt the model or rank again."))
                return
            self.loadCase(caseId)

    def confirmLeavingCase(self, nextCaseId=None):
        """Ask before unsubmitted edits go; a copy is written first so even 'discard' loses nothing."""
        if not self.edits.mustConfirmLeaving(nextCaseId):
            return True
        p = self._parameterNode
        try:
            backup = self.logic.backupUnsubmittedLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId)
            where = _("A copy of the edits is kept in {path}.").format(path=backup)
        except Exception as error:  # an empty or invalid segmentation cannot be exported: say so
            where = _("No copy could be written ({error}).").format(error=error)
        return slicer.util.confirmOkCancelDisplay(
            _("Case {case} has edits that were not submitted. {where} Continue without submitting?").format(
                case=p.currentCaseId, where=where))

    def observeSegmentationEdits(self, segmentationNode):
        if self._observedSegmentation is not None:
            self.removeObserver(self._observedSegmentation, slicer.vtkSegmentation.RepresentationModified,
                                self.onSegmentationEdited)
        self._observedSegmentation = segmentationNode.GetSegmentation()
        self.addObserver(self._observedSegmentation, slicer.vtkSegmentation.RepresentationModified,
                         self.onSegmentationEdited)

    def onSegmentationEdited(self, caller=None, event=None):
        self.edits.segmentationEdited()

    def loadCase(self, caseId):
        if not self.confirmLeavingCase(caseId):
            return
        self.ui.caseStatusLabel.text = _("Loading {case} and the model's prediction...").format(case=caseId)
        client = self.logic.client
        self.runInBackground(lambda: self.logic.fetchCase(client, caseId), self.onCaseFetched,
                             _("Failed to download case {case}.").format(case=caseId))

    def onCaseFetched(self, files):
        with slicer.util.tryWithErrorDisplay(_("Failed to load case {case}.").format(case=files["caseId"]),
                                             waitCursor=True):
            volume, segmentation = self.logic.loadCase(files, self._parameterNode)
            self.edits.caseLoaded(files["caseId"])
            self.observeSegmentationEdits(segmentation)
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            editor = self.ui.segmentEditorWidget
            editor.setSegmentationNode(segmentation)
            if hasattr(editor, "setSourceVolumeNode"):
                editor.setSourceVolumeNode(volume)
            else:  # Slicer < 5.4
                editor.setMasterVolumeNode(volume)
            self.ui.caseStatusLabel.text = _("{case}: prediction of model {version}. Correct it, then submit.").format(
                case=files["caseId"], version=files.get("modelVersion") or "?")
            self.renderWorklist()

    def onSubmitLabel(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to submit the label."), waitCursor=True):
            p = self._parameterNode
            path = self.logic.exportLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId)
            client, caseId, author = self.logic.client, p.currentCaseId, p.annotator
            self.ui.caseStatusLabel.text = _("Uploading the label of {case}...").format(case=caseId)
            self.runInBackground(lambda: client.uploadLabel(caseId, path, author), self.onLabelSubmitted,
                                 _("The worker refused the label of {case}.").format(case=caseId))

    def onLabelSubmitted(self, reply):
        self.edits.labelSubmitted(reply["case_id"])
        self.logic.worklist.markLabeled(reply["case_id"])
        self.ui.caseStatusLabel.text = _("Label of {case} saved (values {values}).").format(
            case=reply["case_id"], values=reply.get("label_values"))
        self.renderWorklist()
        self.pokeAll(force=True)

    def onAdapt(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start adaptation."), waitCursor=True):
            p, client = self._parameterNode, self.logic.client
            steps, pseudo = p.adaptSteps or None, p.usePseudoLabels
            self.adaptJobId = "pending"
            self.runInBackground(lambda: client.adapt(steps, pseudo), self.onJobStarted,
                                 _("Failed to start adaptation."))

    def onCancelJob(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel the job."), waitCursor=True):
            client = self.logic.client
            for jobId in (self.adaptJobId, self.rankJobId):
                if jobId and jobId != "pending":
                    self.runInBackground(lambda j=jobId: client.cancelJob(j), lambda job: self.pokeAll(True),
                                         _("Failed to cancel the job."))

    def onActivateModel(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to activate the model version."), waitCursor=True):
            version = self.ui.modelVersionComboBox.currentData
            client = self.logic.client
            self.runInBackground(lambda: client.activateModel(version), self.onModelActivated,
                                 _("Failed to activate model {version}.").format(version=version))

    def onModelActivated(self, reply):
        version = reply.get("active_model_version")
        self.logic.worklist.setActiveModelVersion(version)
        slicer.util.showStatusMessage(_("Model {version} is active.").format(version=version), 5000)
        self.renderWorklist()
        self.pokeAll(force=True)


class ASFDALogic(ScriptedLoadableModuleLogic):
    """Everything but the GUI; usable from the Python console and the test below."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.client = None
        self.info = None
        self.launcher = None
        self.worklist = Worklist()
        self.workDir = tempfile.mkdtemp(prefix="asfda-slicer-")

    def getParameterNode(self):
        return ASFDAParameterNode(super().getParameterNode())

    @staticmethod
    def getSegmentEditorNode():
        # Our own singleton, so the Segment Editor module's settings are left alone.
        node = slicer.mrmlScene.GetSingletonNode("ASFDA", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.vtkMRMLSegmentEditorNode()
            node.SetSingletonTag("ASFDA")
            node = slicer.mrmlScene.AddNode(node)
        return node

    @staticmethod
    def moduleDir():
        return os.path.dirname(os.path.abspath(__file__))

    # Connection: openConnection may run in a worker thread; setConnection on the GUI thread.
    @staticmethod
    def openConnection(url, token=""):
        client = WorkerClient(url, token)
        return client, client.info()

    def setConnection(self, client, info):
        self.client, self.info = client, info
        self.worklist = Worklist(activeModelVersion=info.get("active_model_version"))

    def ensureLocalDependencies(self):
        return dependencies.ensureLocalWorkerDependencies(self.moduleDir())

    def startLocalWorker(self, datastorePath, port, pythonExecutable="", device="auto", token=""):
        datastore = str(datastorePath or "")
        if datastore in ("", "."):
            raise ValueError(_("Choose a datastore folder first"))
        self.stopLocalWorker()
        self.launcher = WorkerLauncher(
            datastore, port, pythonExecutable=pythonExecutable or None, token=token,
            device=None if device == "auto" else device,
            extraPythonPath=dependencies.workerPythonPath(self.moduleDir()),
            # Slicer's own environment is tuned for Slicer; a worker in another Python needs the user's.
            env=slicer.util.startupEnvironment() if pythonExecutable else None)
        self.launcher.start()
        return self.launcher

    def waitForLocalWorker(self, timeoutS=180.0):
        launcher = self.launcher
        client = WorkerClient(launcher.url, launcher.token)
        launcher.waitUntilHealthy(lambda: client.health(timeout=2.0), timeoutS=timeoutS)
        return client, client.info()

    def stopLocalWorker(self):
        if self.launcher is not None:
            if self.client is not None and self.client.url == self.launcher.url:
                self.client = None
            self.launcher.stop()
            self.launcher = None

    def updateWorklist(self, worklistReply, casesReply):
        self.worklist.updateFromWorklistReply(worklistReply)
        self.worklist.updateFromCasesReply(casesReply)

    @property
    def labels(self):
        return (self.info or {}).get("labels") or {}

    def fetchCase(self, client, caseId):
        """Download the image and a fresh prediction of the active model (background thread)."""
        folder = os.path.join(self.workDir, caseId)
        os.makedirs(folder, exist_ok=True)
        imagePath = os.path.join(folder, "image.nii.gz")
        predictionPath = os.path.join(folder, "prediction.nii.gz")
        client.downloadImage(caseId, imagePath)
        version = client.infer(caseId, predictionPath)
        return {"caseId": caseId, "image": imagePath, "prediction": predictionPath, "modelVersion": version}

    def loadCase(self, files, parameterNode=None):
        """Replace the previous case's nodes with this case's volume and pre-filled segmentation."""
        scene = slicer.mrmlScene
        if parameterNode is not None:
            for node in (parameterNode.currentSegmentation, parameterNode.currentVolume):
                if node is not None:
                    scene.RemoveNode(node)
        caseId = files["caseId"]
        volume = segmentation_io.loadScalarVolume(scene, files["image"], caseId)
        segmentation = segmentation_io.loadPredictionAsSegmentation(
            scene, files["prediction"], self.labels, (self.info or {}).get("label_colors"), volume,
            name=f"{caseId} label")
        if parameterNode is not None:
            parameterNode.currentCaseId = caseId
            parameterNode.currentVolume = volume
            parameterNode.currentSegmentation = segmentation
        return volume, segmentation

    def backupUnsubmittedLabel(self, segmentationNode, volumeNode, caseId):
        """Save unsubmitted edits under the work folder with a time stamp; returns the path."""
        folder = os.path.join(self.workDir, caseId, "unsubmitted-" + time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(folder, exist_ok=True)
        return segmentation_io.exportSegmentationToFile(
            slicer.mrmlScene, segmentationNode, volumeNode, self.labels, folder, caseId)

    def exportLabel(self, segmentationNode, volumeNode, caseId):
        if not caseId or segmentationNode is None:
            raise ValueError(_("Load a case before submitting a label"))
        folder = os.path.join(self.workDir, caseId)
        os.makedirs(folder, exist_ok=True)
        return segmentation_io.exportSegmentationToFile(
            slicer.mrmlScene, segmentationNode, volumeNode, self.labels, folder, caseId)


class ASFDATest(ScriptedLoadableModuleTest):
    """The whole loop against a real local worker on a tiny demo datastore (CPU, a few minutes).

    Needs the worker requirements in the Python named by the ASFDA_TEST_PYTHON environment
    variable (default: Slicer's own Python).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ASFDA_loop()

    def waitFor(self, condition, timeoutS, message):
        deadline = time.monotonic() + timeoutS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            slicer.app.processEvents()
            time.sleep(0.2)
        raise AssertionError(message)

    def waitForJob(self, client, job, timeoutS=600):
        def finishedJob():
            current = client.job(job["job_id"])
            return current if JobState(current["state"]).finished else None

        finished = self.waitFor(finishedJob, timeoutS, f"{job['kind']} job did not finish")
        self.assertEqual(finished["state"], "succeeded", finished.get("error"))
        return finished

    def test_ASFDA_loop(self):
        self.delayDisplay("Building a tiny demo datastore")
        logic = ASFDALogic()
        python = os.environ.get("ASFDA_TEST_PYTHON", "")
        workDir = tempfile.mkdtemp(prefix="asfda-test-")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(dependencies.workerPythonPath(logic.moduleDir()))
        subprocess.run([python or slicerPythonExecutable(), "-m", "asfda", "demo", "--quick", "--out", workDir],
                       check=True, timeout=900, env=env)
        datastore = os.path.join(workDir, "datastore")

        self.delayDisplay("Starting a local worker")
        logic.startLocalWorker(datastore, 18765 + os.getpid() % 1000, python, "cpu")
        try:
            logic.setConnection(*logic.waitForLocalWorker(timeoutS=300))
            client = logic.client
            self.assertTrue(logic.labels)
            versionBefore = logic.info["active_model_version"]

            self.delayDisplay("Ranking")
            self.waitForJob(client, client.rank(2))
            logic.updateWorklist(client.worklist(), client.cases())
            caseId = logic.worklist.nextCase()
            self.assertIsNotNone(caseId)
            self.assertTrue(logic.worklist.selectedCaseIds)

            self.delayDisplay(f"Loading {caseId} with its prediction")
            parameterNode = logic.getParameterNode()
            volume, segmentation = logic.loadCase(logic.fetchCase(client, caseId), parameterNode)
            self.assertEqual(parameterNode.currentCaseId, caseId)
            self.assertGreater(segmentation.GetSegmentation().GetNumberOfSegments(), 0)

            self.delayDisplay("Submitting the (uncorrected) prediction as the label")
            path = logic.exportLabel(segmentation, volume, caseId)
            reply = client.uploadLabel(caseId, path, "ASFDATest")
            self.assertEqual(reply["tag"], "final")
            logic.updateWorklist(client.worklist(), client.cases())
            self.assertTrue(logic.worklist.row(caseId).labeled)

            self.delayDisplay("Adapting")
            versionsBefore = len(client.models())
            self.waitForJob(client, client.adapt(steps=2, usePseudoLabels=True))
            models = client.models()
            active = [m["version"] for m in models if m["active"]]
            self.assertEqual(len(models), versionsBefore + 1)
            self.assertEqual(len(active), 1)
            self.assertNotEqual(active[0], versionBefore)

            self.delayDisplay("Rolling back")
            self.assertEqual(client.activateModel(versionBefore)["active_model_version"], versionBefore)
            logic.worklist.setActiveModelVersion(versionBefore)
            logic.updateWorklist(client.worklist(), client.cases())
        finally:
            logic.stopLocalWorker()
            shutil.rmtree(workDir, ignore_errors=True)
        logging.info("ASFDA loop test passed")
        self.delayDisplay("Test passed")
