"""ASFDA: rank unlabeled volumes, annotate the top few, adapt the model, in 3D Slicer.

The module is a thin client: all compute runs in the ASFDA worker (a separate process, local or
remote), so Slicer never imports torch. Worker calls run in background threads; a QTimer drains
their results on the GUI thread and the GUI is rendered from cached worker state only.
"""

import logging
import os
import shutil
from typing import Annotated

import qt
import slicer
from ASFDALib import case_lease, segmentation_io, selftest, session_folder
from ASFDALib.backup_writer import BackupWriter
from ASFDALib.case_files import CaseFilesMixin
from ASFDALib.edits import EditTracker, SegmentationEditWatcher
from ASFDALib.effort import EffortRecorder
from ASFDALib.machine_settings import DEVICES, MachineSettings
from ASFDALib.model_versions import versionLabel
from ASFDALib.parameter_gui import connectParameterGui
from ASFDALib.poller import CachedPoller, TaskRunner, tickIntervalMs, yieldToBackgroundThreads
from ASFDALib.sparse_slices import requestTooltip
from ASFDALib.sparse_view import SparseSlicesMixin
from ASFDALib.worker_connection import WorkerConnectionMixin
from ASFDALib.worklist import COLUMNS, SORT_KEYS, JobProgress, JobState, Worklist, unfinishedJobs
from ASFDALib.worklist_table import CellView, RowView, WorklistTable
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer < 5.4

    def _(text):
        return text

    def translate(context, text):
        return text


PENDING = "pending"  # a job request is in flight; its id is not known yet
EXIT_BACKUP_KEY = "ASFDA/exitBackup"  # "case\npath" of edits kept when Slicer last closed
DKD_COLUMN, HELD_BY_COLUMN, CASE_COLUMN = COLUMNS.index("DKD"), COLUMNS.index("Held by"), COLUMNS.index("Case")


class ASFDA(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ASFDA")
        # The core context, so the category merges with Slicer's own translated "Segmentation".
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["ASFDA Slicer maintainers (asfda-slicer)"]
        self.parent.helpText = _(
            "Adapt a segmentation model to your scans with few annotations. Rank unlabeled volumes "
            "(DKD knowledge gap + ASD difficulty), correct the model's prediction on the top few, then "
            "fine-tune on your labels plus reliable pseudo-labels. Any model version can be made active "
            "again. The scoring formulas are this project's reconstruction of arXiv 2509.10784.")
        self.parent.acknowledgementText = _(
            "Method: Yang, Marcus, Sotiras, arXiv 2509.10784. Built on 3D Slicer and MONAI.")


@parameterNodeWrapper
class ASFDAParameterNode:
    """Saved with the scene: only what belongs to this scene's work.

    Per-computer choices (worker URL, port, Python, device, datastore, annotator) are in the
    application settings (ASFDALib.machine_settings); the worker token is kept nowhere.
    """

    budgetK: Annotated[int, WithinRange(1, 1000)] = 4
    slicesPerVolume: Annotated[int, WithinRange(0, 1000)] = 0  # 0: whole volumes; else a sparse rank
    adaptSteps: Annotated[int, WithinRange(0, 100000)] = 0
    usePseudoLabels: bool = True
    currentCaseId: str = ""
    currentVolume: slicer.vtkMRMLScalarVolumeNode
    currentSegmentation: slicer.vtkMRMLSegmentationNode


class ASFDAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin, SparseSlicesMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.timer = None
        self.effectFactory = None
        self._quitConnected = False
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._guiConnected = False
        self.tasks = TaskRunner()
        self.backups = BackupWriter(self.tasks, self.onBackupFailed)
        self.pollers = {}
        self._rendered = {}
        self._shownModels = None  # (version, active) pairs the combo shows
        self._announced = set()
        self._ticking = False
        self._sceneGeneration = 0  # scene closes so far: a case asked for before one belongs to the old scene
        self.sortKey, self.sortDescending = "rank", False
        self.rankJobId = None
        self.adaptJobId = None
        self._jobsPrimed = False
        self.edits = EditTracker()
        self.lease = case_lease.CaseLease()
        self.effort = EffortRecorder()
        self.editWatcher = SegmentationEditWatcher(slicer.vtkSegmentation, self.onSegmentationEdited)

    def onSegmentationEdited(self):
        self.edits.segmentationEdited()
        effect = self.ui.segmentEditorWidget.activeEffect() if hasattr(self, "ui") else None
        self.effort.edited(getattr(effect, "name", None))

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
        self.worklistTable = WorklistTable(table, qt)

        self.ui.connectButton.clicked.connect(self.onConnect)
        self.ui.startLocalWorkerButton.clicked.connect(self.onStartLocalWorker)
        self.ui.stopLocalWorkerButton.clicked.connect(self.onStopLocalWorker)
        self.ui.rankButton.clicked.connect(self.onRank)
        self.ui.nextCaseButton.clicked.connect(self.onNextCase)
        self.ui.submitLabelButton.clicked.connect(self.onSubmitLabel)
        self.ui.adaptButton.clicked.connect(self.onAdapt)
        self.ui.cancelJobButton.clicked.connect(self.onCancelJob)
        self.ui.activateModelButton.clicked.connect(self.onActivateModel)
        self.setupSparseSlices()  # Next slice and the requested-slices label: ASFDALib/sparse_view.py

        editor = self.ui.segmentEditorWidget
        editor.setMRMLScene(slicer.mrmlScene)
        # The case decides what is edited: with these selectors a clinician could paint another
        # segmentation and Submit would send the untouched prediction.
        editor.setSegmentationNodeSelectorVisible(False)
        editor.setSourceVolumeNodeSelectorVisible(False)
        # Extensions register effects while Slicer starts, possibly after this editor was built: take them in,
        # as Slicer's own Segment Editor module does.
        self.effectFactory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self.effectFactory.connect("effectRegistered(QString)", self.onEditorEffectRegistered)
        self.setupMachineSettings()
        self.initializeParameterNode()
        # Slicer's exit closes no scene: keep unsubmitted edits while the scene and Qt are still whole.
        slicer.app.aboutToQuit.connect(self.onApplicationAboutToQuit)
        self._quitConnected = True
        self.showExitBackupOfLastSession()
        # Always ticking: jobs finish while the clinician works in other modules.
        self.timer = qt.QTimer()
        self.timer.setInterval(tickIntervalMs(False))
        self.timer.timeout.connect(self.onTimerTick)
        self.timer.start()
        self.updateGUIFromCache()

    def setupMachineSettings(self):
        self.ui.deviceComboBox.clear()
        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)
        self.ui.localPortSpinBox.setRange(1024, 65535)
        s = MachineSettings.load(qt.QSettings())
        self.ui.workerUrlLineEdit.text = s.workerUrl
        self.ui.localPortSpinBox.value = s.localPort
        self.ui.workerPythonLineEdit.text = s.workerPython
        self.ui.deviceComboBox.currentIndex = DEVICES.index(s.device)
        self.ui.datastorePathLineEdit.currentPath = s.datastorePath
        self.ui.annotatorLineEdit.text = s.annotator
        for signal in (self.ui.workerUrlLineEdit.textChanged, self.ui.localPortSpinBox.valueChanged,
                       self.ui.workerPythonLineEdit.textChanged, self.ui.deviceComboBox.currentIndexChanged,
                       self.ui.datastorePathLineEdit.currentPathChanged, self.ui.annotatorLineEdit.textChanged):
            signal.connect(self.saveMachineSettings)

    def machineSettings(self):
        return MachineSettings.fromValues({
            "workerUrl": self.ui.workerUrlLineEdit.text, "localPort": self.ui.localPortSpinBox.value,
            "workerPython": self.ui.workerPythonLineEdit.text, "device": self.ui.deviceComboBox.currentText,
            "datastorePath": self.ui.datastorePathLineEdit.currentPath, "annotator": self.ui.annotatorLineEdit.text})

    def saveMachineSettings(self, *unused):
        self.machineSettings().save(qt.QSettings())

    def onApplicationAboutToQuit(self):
        self.keepEditsAtExit()

    def keepEditsAtExit(self):
        """Write unsubmitted edits without asking (nothing can stop an exit); the next session names the file."""
        if not self.edits.mustConfirmLeaving():
            return None
        p = self._parameterNode
        try:
            backup = self.logic.backupUnsubmittedLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId,
                                                       effort=self.effort)
        except Exception:
            logging.exception("ASFDA: could not keep the unsubmitted edits of case %s at exit", p.currentCaseId)
            return None
        logging.warning("ASFDA: unsubmitted edits of case %s kept in %s", p.currentCaseId, backup)
        qt.QSettings().setValue(EXIT_BACKUP_KEY, f"{p.currentCaseId}\n{backup}")
        self.edits.keptCopy()
        return backup

    def showExitBackupOfLastSession(self):
        settings = qt.QSettings()
        if not settings.contains(EXIT_BACKUP_KEY):
            return
        caseId, _sep, backup = str(settings.value(EXIT_BACKUP_KEY) or "").partition("\n")
        settings.remove(EXIT_BACKUP_KEY)
        if backup:
            self.ui.caseStatusLabel.text = _("Slicer closed with unsubmitted edits of case {case}; they were kept "
                                             "in {path}.").format(case=caseId, path=backup)

    def onEditorEffectRegistered(self, *unused):
        self.ui.segmentEditorWidget.updateEffectList()

    def cleanup(self):
        if self.timer is not None:
            self.timer.stop()
        if self._quitConnected:
            slicer.app.aboutToQuit.disconnect(self.onApplicationAboutToQuit)
            self._quitConnected = False
        self.keepEditsAtExit()  # when Slicer quits without aboutToQuit reaching us first
        self.backups.wait()  # a scene close's copy still being written
        if self.effectFactory is not None:
            self.effectFactory.disconnect("effectRegistered(QString)", self.onEditorEffectRegistered)
            self.effectFactory = None
        for task in self.giveBack(self.lease.left()):
            task.done.wait(2.0)  # Slicer is closing: a short wait, the lease expires anyway
        self.editWatcher.release()
        self.removeObservers()
        if self.logic is not None:
            self.logic.stopLocalWorker()  # never leave a training run holding the GPU after Slicer exits
            self.logic.cleanup()

    def enter(self):
        self.initializeParameterNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self):
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        # The GUI stays bound while hidden: 5.8's and 5.10's wrappers leave a node observer behind on each
        # disconnect, so binding again on every entry leaked one per entry. A scene close still unbinds.

    def onSceneStartClose(self, caller, event):
        # A scene close cannot be refused: keep a copy of unsubmitted edits and say where it is.
        self._sceneGeneration += 1
        self.keepUnsubmittedEdits(askToContinue=False, writer=self.backups)  # written while the warning shows
        self.giveBack(self.lease.left())
        self.editWatcher.release()
        self.edits.caseClosed()
        self.closeSparseCase()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.getSegmentEditorNode())

    def setParameterNode(self, inputParameterNode):
        node = inputParameterNode.parameterNode if inputParameterNode else None
        current = self._parameterNode.parameterNode if self._parameterNode else None
        if self._guiConnected and node is not None and node is current:
            return  # already shown: connecting again would stack a second set of connectors
        self.disconnectParameterGui()
        self._parameterNode = inputParameterNode
        if inputParameterNode:
            self._parameterNodeGuiTag = connectParameterGui(inputParameterNode, self.ui)  # a tag on 5.8 too
            self._guiConnected = True

    def disconnectParameterGui(self):
        # connectParameterGui always gives a tag (5.8's connectGui gave none, so each scene close stacked
        # another set of connectors); setParameterNode still does not bind the same node twice.
        if self._guiConnected and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self._guiConnected = False

    # -- background work ---------------------------------------------------------------------

    def runInBackground(self, function, onSuccess, errorMessage, onFailure=None):
        """Run ``function`` off the GUI thread; on failure undo ``onFailure`` state, then tell the user.

        The error is shown, not raised: raising would leave the timer tick that delivers it.
        """

        def onError(error):
            if onFailure is not None:
                onFailure()
            slicer.util.errorDisplay(f"{errorMessage}\n\n{error}")

        self.tasks.submit(function, onSuccess, onError)
        self.adjustTickInterval()

    def startPolling(self):
        client = self.logic.client
        self.pollers = {
            "worklist": CachedPoller(lambda: (client.worklist(), client.cases()), intervalS=3.0),
            "jobs": CachedPoller(client.jobs, intervalS=1.0),
            "models": CachedPoller(client.models, intervalS=5.0),
            "lease": CachedPoller(self.lease.renew, intervalS=case_lease.RENEW_INTERVAL_S),
        }
        self._rendered = {}
        self._jobsPrimed = False
        self.pokeAll(force=True)

    def pokeAll(self, force=False):
        for poller in self.pollers.values():
            poller.poke(force=force)

    def busy(self):
        return self.tasks.pending > 0 or any(p.busy for p in self.pollers.values())

    def adjustTickInterval(self):
        if self.timer is not None:
            interval = tickIntervalMs(self.busy())
            if self.timer.interval != interval:
                self.timer.setInterval(interval)

    def onTimerTick(self):
        if self._ticking:  # a dialog opened by a continuation runs a nested event loop
            return
        if qt.QApplication.activeModalWidget() is not None:
            # A question (the module's or Slicer's) runs a nested loop too: deliver nothing under it, or a case
            # asked for earlier replaces the one the question is about. Polls go on (the lease is renewed).
            self.pokeAll()
            return
        self._ticking = True
        try:
            self.tasks.drain()
            self.pokeAll()
        except Exception:
            logging.exception("ASFDA: timer tick failed")
        finally:
            try:
                self.updateGUIFromCache()
            finally:
                busy = self.busy()
                yieldToBackgroundThreads(busy)
                self.adjustTickInterval()
                self._ticking = False

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
        lease = self._fresh("lease")
        if lease is not None and lease.value:
            self.ui.caseStatusLabel.text = _("Your lease on {case} expired and {name} holds it now: Submit will be "
                                             "refused.").format(case=self.lease.caseId, name=lease.value)
        elif lease is not None and self.lease.labelChange:
            self.ui.caseStatusLabel.text = _("The label of {case} changed since you opened it (revision {change}): "
                                             "Submit will be refused; open the case again to see it.").format(
                case=self.lease.caseId, change=self.lease.labelChange)
        errors = [p.error for p in self.pollers.values() if p.error]
        if not connected:
            status = _("Not connected")
        elif errors:
            status = _("Worker not answering: {error}").format(error=errors[0])
        else:
            info = self.logic.info or {}
            status = _("Connected to {url} as {name} ({device}, model {version}, datastore {datastore})").format(
                url=self.logic.client.url, name=self.logic.client.annotator, device=info.get("device", "?"),
                datastore=info.get("datastore", "?"),
                version=self.logic.worklist.activeModelVersion or info.get("active_model_version") or "none")
        self.ui.workerStatusLabel.text = status
        self.refreshSparseSlices()
        p = self._parameterNode
        caseOpen = bool(p and p.currentCaseId and p.currentSegmentation)
        jobRunning = any(jobId not in (None, PENDING) for jobId in (self.rankJobId, self.adaptJobId))
        self.ui.stopLocalWorkerButton.enabled = self.logic.launcher is not None
        self.ui.rankButton.enabled = connected and self.rankJobId is None
        self.ui.nextCaseButton.enabled = connected and bool(self.logic.worklist.rows)
        self.ui.submitLabelButton.enabled = connected and caseOpen
        self.ui.adaptButton.enabled = connected and self.adaptJobId is None
        self.ui.cancelJobButton.enabled = connected and jobRunning
        self.ui.activateModelButton.enabled = connected and self.ui.modelVersionComboBox.count > 0

    def renderWorklist(self):
        rows = self.logic.worklist.sortedRows(self.sortKey, self.sortDescending)
        current = self._parameterNode.currentCaseId if self._parameterNode else ""
        self.worklistTable.render([self.rowView(row, current) for row in rows])

    @staticmethod
    def rowView(row, currentCaseId):
        """What one worklist row shows: texts, tooltips, the open case in bold."""
        cells = []
        for c, text in enumerate(row.cells()):
            tips = []
            if row.stale and row.staleReason == "labels":
                tips.append(_("Labels came in since this ranking: rank again"))
            elif row.stale:
                tips.append(_("Scored by model {version}, not the active one: rank again").format(
                    version=row.modelVersion))
            if c == DKD_COLUMN and row.knowledgeSource:
                tips.append(_("DKD knowledge source: {source}").format(source=row.knowledgeSource))
            if c == CASE_COLUMN and requestTooltip(row.requestedSlices):
                tips.append(requestTooltip(row.requestedSlices))
            if c == HELD_BY_COLUMN and row.leaseExpiresAt:
                tips.append(_("Leased until {time}").format(time=row.leaseExpiresAt))
            cells.append(CellView(text, "\n".join(tips), row.caseId == currentCaseId))
        return RowView(row.caseId, tuple(cells))

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
            if not (progress.state.finished and getattr(self, attr) == PENDING):  # an older job's end
                setattr(self, attr, None if progress.state.finished else progress.jobId)
            if kind == "adapt":  # the gate's verdict stays readable after the status message is gone
                lines = (progress.describe(), progress.adaptOutcome())
                self.ui.adaptStatusLabel.text = "; ".join(t for t in lines if t)
            if progress.state.finished and progress.jobId not in self._announced:
                self._announced.add(progress.jobId)
                self.onJobFinished(progress)

    def renderModels(self, models):
        versions = tuple((model["version"], versionLabel(model), bool(model.get("active"))) for model in models)
        if versions == self._shownModels:
            return  # an unchanged list leaves the combo alone: an open drop-down and the choice stay
        self._shownModels = versions
        combo = self.ui.modelVersionComboBox
        chosen = combo.currentData
        combo.blockSignals(True)
        combo.clear()
        for version, label, _isActive in versions:
            combo.addItem(label, version)
        index = combo.findData(chosen) if chosen else -1
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)
        active = next((version for version, _label, isActive in versions if isActive), None)
        if active:
            self.logic.worklist.setActiveModelVersion(active)
        self.ui.activeModelLabel.text = _("Active model: {version}").format(version=active or "none")

    def onJobFinished(self, progress):
        if progress.kind == "adapt" and progress.state == JobState.SUCCEEDED:
            slicer.util.showStatusMessage(
                _("Adaptation finished: {outcome}. Rank again to refresh the scores.").format(
                    outcome=progress.adaptOutcome()), 8000)
        elif progress.state == JobState.FAILED:
            slicer.util.errorDisplay(_("Worker job failed: {text}").format(text=progress.describe()))
        self.pokeAll(force=True)

    # -- actions -----------------------------------------------------------------------------

    def onConnected(self, connection):
        self.logic.setConnection(*connection)
        self.lease.reconnected(self.logic.client)
        self.ui.workerUrlLineEdit.text = self.logic.client.url
        self.rankJobId = self.adaptJobId = None
        self.startPolling()

    def onConnect(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to connect to the worker."), waitCursor=True):
            url, token, annotator = self.ui.workerUrlLineEdit.text, self.ui.workerTokenLineEdit.text, self.annotator()
            if not annotator:
                return
            case_lease.checkToken(url, token)
            self.ui.workerStatusLabel.text = _("Connecting to {url}...").format(url=url)
            datastore = self.machineSettings().datastorePath
            self.runInBackground(lambda: self.logic.openConnection(url, token, annotator, datastore), self.onConnected,
                                 _("Failed to connect to the worker."))

    def onStartLocalWorker(self):
        if not self.confirmReplacingLocalWorker():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the local worker."), waitCursor=True):
            s, annotator = self.machineSettings(), self.annotator()
            if not annotator or (not s.workerPython and not self.logic.ensureLocalDependencies()):
                return
            launcher = self.logic.startLocalWorker(s.datastorePath, s.localPort, s.workerPython, s.device,
                                                   self.ui.workerTokenLineEdit.text)
            self.ui.workerStatusLabel.text = _("Starting local worker (log: {log})...").format(log=launcher.logPath)
            self.runInBackground(lambda: self.logic.waitForLocalWorker(annotator), self.onConnected,
                                 _("The local worker did not start."))

    def confirmReplacingLocalWorker(self):
        """Starting a worker stops the running one and its jobs: ask first, naming what would stop."""
        launcher = self.logic.launcher
        if launcher is None or not launcher.isRunning():
            return True
        client, jobsPoller = self.logic.client, self.pollers.get("jobs")
        if client is not None and client.url == launcher.url and jobsPoller is not None:
            running = [_("job {job} ({state})").format(job=p.jobId, state=p.describe())
                       for p in unfinishedJobs(jobsPoller.value)]
            jobs = _("It is running {jobs}.").format(jobs="; ".join(running)) if running else _("It runs no job.")
        else:
            jobs = _("Its jobs are not known here (not connected to it).")
        return slicer.util.confirmOkCancelDisplay(_(
            "A local worker is already running at {url} (datastore {datastore}). {jobs} Starting a new worker "
            "stops it and everything it runs. Stop it and start a new one?").format(
                url=launcher.url, datastore=launcher.datastore, jobs=jobs))

    def onStopLocalWorker(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to stop the local worker."), waitCursor=True):
            self.logic.stopLocalWorker()
            self.pollers = {}
            if self.logic.client is None:  # the lease was on the stopped worker: nothing to give back
                self.lease.forget()
            self.rankJobId = self.adaptJobId = None

    def startJob(self, attr, request, errorMessage):
        """Mark the job as requested until the worker answers; a refusal frees the button again."""
        setattr(self, attr, PENDING)

        def onFailure():
            if getattr(self, attr) == PENDING:
                setattr(self, attr, None)

        self.runInBackground(request, self.onJobStarted, errorMessage, onFailure=onFailure)
        self.updateGUIFromCache()  # disable the button now, not at the next tick

    def onRank(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start ranking."), waitCursor=True):
            client, k, slices = self.logic.client, self._parameterNode.budgetK, self._parameterNode.slicesPerVolume
            self.startJob("rankJobId", lambda: client.rank(k, slicesPerVolume=slices), _("Failed to start ranking."))

    def onAdapt(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start adaptation."), waitCursor=True):
            p, client = self._parameterNode, self.logic.client
            steps, pseudo = p.adaptSteps or None, p.usePseudoLabels
            self.startJob("adaptJobId", lambda: client.adapt(steps, pseudo), _("Failed to start adaptation."))

    def onJobStarted(self, job):
        setattr(self, "rankJobId" if job.get("kind") == "rank" else "adaptJobId", job["job_id"])
        self.pokeAll(force=True)

    def onCancelJob(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel the job."), waitCursor=True):
            client = self.logic.client
            for jobId in (self.adaptJobId, self.rankJobId):
                if jobId and jobId != PENDING:
                    self.runInBackground(lambda j=jobId: client.cancelJob(j), lambda job: self.pokeAll(True),
                                         _("Failed to cancel the job."))

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
            current, client = self._parameterNode.currentCaseId or None, self.logic.client
            if not self.keepUnsubmittedEdits():
                return
            candidates = self.logic.worklist.candidates(current, client.annotator)
            self.ui.caseStatusLabel.text = _("Asking the worker for your next case...")
            self.runInBackground(lambda: self.lease.openNext(client, candidates, current, self.logic.fetchCase),
                                 self.caseOpenedHandler(), _("Failed to load the next case."))

    def keepUnsubmittedEdits(self, nextCaseId=None, askToContinue=True, writer=None):
        """Write a copy of unsubmitted edits before they go; ask (or, when nothing can stop it, tell).
        ``writer``: write it in the background (``backupUnsubmittedLabel``)."""
        if not self.edits.mustConfirmLeaving(nextCaseId):
            return True
        p = self._parameterNode
        try:
            backup = self.logic.backupUnsubmittedLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId,
                                                       effort=self.effort, writer=writer)
            where = _("A copy of the edits is kept in {path}.").format(path=backup)
        except Exception as error:  # an invalid segmentation cannot be exported: say so
            where = _("No copy could be written ({error}).").format(error=error)
        if not askToContinue:
            slicer.util.warningDisplay(_("Case {case} had edits that were not submitted. {where}").format(
                case=p.currentCaseId, where=where))
            return True
        return slicer.util.confirmOkCancelDisplay(
            _("Case {case} has edits that were not submitted. {where} Continue without submitting?").format(
                case=p.currentCaseId, where=where))

    def onBackupFailed(self, path, error):
        slicer.util.errorDisplay(_("The copy of unsubmitted edits could not be written to {path}: {error}").format(
            path=path, error=error))

    def loadCase(self, caseId):
        if not self.keepUnsubmittedEdits(caseId):
            return
        self.ui.caseStatusLabel.text = _("Loading {case} and the model's prediction...").format(case=caseId)
        client = self.logic.client
        self.runInBackground(lambda: self.lease.open(client, caseId, self.logic.fetchCase), self.caseOpenedHandler(),
                             _("Failed to download case {case}.").format(case=caseId))

    def caseOpenedHandler(self):
        """``onCaseOpened`` for a case asked for now: one that arrives after a scene close is given back."""
        generation = self._sceneGeneration
        return lambda opening: self.onCaseOpened(opening, generation)

    def onCaseOpened(self, opening, sceneGeneration=None):
        if opening is not None and sceneGeneration not in (None, self._sceneGeneration):
            # Asked for in a scene since closed (possibly while the module was hidden): not loaded into the new
            # one, and its lease goes back now rather than after 30 minutes.
            self.giveBack(self.lease.opened(opening, False))
            if opening.files:
                self.logic.caseFilesRead(opening.files)
            return
        if opening is None:
            self.ui.caseStatusLabel.text = _("No case is left for you: every case is labeled or held by another "
                                             "annotator. Adapt the model or rank again.")
        elif opening.heldBy:
            self.ui.caseStatusLabel.text = _("{case} is held by {name}: not opened for editing.").format(
                case=opening.caseId, name=opening.heldBy)
        else:
            try:
                self.onCaseFetched(opening.files)
            finally:
                self.giveBack(self.lease.opened(opening, self._parameterNode.currentCaseId == opening.caseId))
        self.pokeAll(force=True)  # the Held-by column changed

    def giveBack(self, leases):
        return [self.tasks.submit(lambda c=client, i=caseId: case_lease.release(c, i)) for client, caseId in leases]

    def annotator(self):
        """The annotator's name from the application settings; asked once when there is none yet."""
        name = self.ui.annotatorLineEdit.text
        if not name.strip():
            name = qt.QInputDialog.getText(slicer.util.mainWindow(), _("ASFDA annotator"), _(
                "Your name, as the worker records it with your leases and labels (asked once; editable under Worker):"))
        if not (name or "").strip():
            self.ui.workerStatusLabel.text = _("Enter your name as annotator to connect.")
            return None
        self.ui.annotatorLineEdit.text = case_lease.cleanAnnotatorName(name)  # saved in the settings
        return self.ui.annotatorLineEdit.text

    def onCaseFetched(self, files):
        with slicer.util.tryWithErrorDisplay(_("Failed to load case {case}.").format(case=files["caseId"]),
                                             waitCursor=True):
            self.editWatcher.release()
            volume, segmentation = self.logic.loadCase(files, self._parameterNode)
            self.edits.caseLoaded(files["caseId"])
            self.effort.journalFolder = os.path.join(self.logic.unsubmittedFolder(), "effort journal")
            self.effort.caseShown(files["caseId"], *self.effort.openedFrom(files.get("prepared")))
            self.editWatcher.watch(segmentation.GetSegmentation())
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            editor = self.ui.segmentEditorWidget
            editor.setSegmentationNode(segmentation)
            editor.setSourceVolumeNode(volume)
            if files.get("revision"):
                self.ui.caseStatusLabel.text = _("{case}: its current label (revision {revision}). Correct it, "
                                                 "then submit.").format(case=files["caseId"],
                                                                        revision=files["revision"])
            else:
                self.ui.caseStatusLabel.text = _("{case}: prediction of model {version}. Correct it, then "
                                                 "submit.").format(case=files["caseId"],
                                                                   version=files.get("modelVersion") or "?")
            self.openSparseCase(files)
            self.renderWorklist()

    def onSubmitLabel(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to submit the label."), waitCursor=True):
            p = self._parameterNode
            if self.ui.segmentEditorWidget.segmentationNode() is not p.currentSegmentation:
                raise ValueError(_("The Segment Editor shows another segmentation than case {case}: "
                                   "load the case again").format(case=p.currentCaseId))
            # A copy of the segments now; the label file is written in the background with the upload.
            noStructure = False
            try:
                label = self.logic.snapshotLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId)
            except segmentation_io.EmptyLabelError:
                if not slicer.util.confirmOkCancelDisplay(_(
                        "Nothing is painted in case {case}. Submit it as a case without any structure "
                        "(every voxel background)?").format(case=p.currentCaseId)):
                    return
                label = self.logic.snapshotLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId,
                                                 allowEmpty=True)
                noStructure = True  # recorded by the worker as the clinician's verdict; the case leaves the pool
            label = self.sparseLabelToSubmit(label, p.currentCaseId)
            if label is None:
                return
            client, caseId, effort = self.logic.client, p.currentCaseId, self.effort.submitting()
            self.ui.caseStatusLabel.text = _("Uploading the label of {case}...").format(case=caseId)

            def send(client_, caseId_, path, maskPath=None, effort=None):
                return self.lease.submit(client_, caseId_, path, maskPath=maskPath, noStructure=noStructure,
                                         effort=effort)

            self.runInBackground(lambda: self.logic.uploadLabel(client, caseId, label, send=send, effort=effort),
                                 self.onLabelSubmitted,
                                 _("The worker refused the label of {case}.").format(case=caseId))

    def onLabelSubmitted(self, reply):
        self.edits.labelSubmitted(reply["case_id"])
        self.effort.labelSubmitted(reply["case_id"])
        self.lease.submitted(reply["case_id"])
        self.logic.worklist.markLabeled(reply["case_id"])
        self.ui.caseStatusLabel.text = _("Label of {case} saved (values {values}).").format(
            case=reply["case_id"], values=reply.get("label_values"))
        self.renderWorklist()
        self.pokeAll(force=True)

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


class ASFDALogic(ScriptedLoadableModuleLogic, WorkerConnectionMixin, CaseFilesMixin):
    """Everything but the GUI; usable from the Python console and the test below.

    Connecting and the local worker: ASFDALib/worker_connection.py; case files: ASFDALib/case_files.py.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.client = None
        self.info = None
        self.launcher = None
        self.worklist = Worklist()
        session_folder.removeStaleSessionFolders()  # downloads a crashed session left behind
        self.workDir = session_folder.createSessionFolder()  # downloads of this session only

    def cleanup(self):
        shutil.rmtree(self.workDir, ignore_errors=True)

    def getParameterNode(self):
        return ASFDAParameterNode(super().getParameterNode())

    @staticmethod
    def getSegmentEditorNode():
        # Our own singleton, so the Segment Editor module's settings are left alone; created from the
        # scene's default node, as the Segment Editor does, so preferences such as overwrite mode apply.
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode("ASFDA", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)  # CreateNodeByClass hands over a reference Python already holds
            node.SetSingletonTag("ASFDA")
            node = scene.AddNode(node)
        return node

    @staticmethod
    def moduleDir():
        return os.path.dirname(os.path.abspath(__file__))

    def updateWorklist(self, worklistReply, casesReply):
        self.worklist.updateFromWorklistReply(worklistReply)
        self.worklist.updateFromCasesReply(casesReply)

    @property
    def labels(self):
        return (self.info or {}).get("labels") or {}

    def loadCase(self, files, parameterNode=None):
        """Replace the previous case's nodes with this case's volume and pre-filled segmentation."""
        scene = slicer.mrmlScene
        if parameterNode is not None:
            for node in (parameterNode.currentSegmentation, parameterNode.currentVolume):
                segmentation_io.removeNodeWithDisplayNodes(scene, node)
        caseId = files["caseId"]
        colors, prepared = (self.info or {}).get("label_colors"), files.get("prepared")
        try:
            if prepared is not None:  # decoded in the background (fetchCase): raw files, values checked
                volume = segmentation_io.loadScalarVolume(scene, prepared.image, caseId, prepared.windowLevel)
                segmentation = segmentation_io.loadSegmentationFile(scene, prepared.segmentation, f"{caseId} label")
            else:
                volume = segmentation_io.loadScalarVolume(scene, files["image"], caseId)
                segmentation = segmentation_io.loadPredictionAsSegmentation(
                    scene, files["prediction"], self.labels, colors, volume, name=f"{caseId} label")
            segmentation_io.markCaseAsStored(scene, volume, segmentation, files.get("folder") or self.workDir, caseId)
        finally:
            self.caseFilesRead(files)
        if parameterNode is not None:
            parameterNode.currentCaseId = caseId
            parameterNode.currentVolume = volume
            parameterNode.currentSegmentation = segmentation
        return volume, segmentation


class ASFDATest(ScriptedLoadableModuleTest):
    """A light in-Slicer test (seconds, no worker); the whole loop only when asked.

    Set ASFDA_TEST_FULL_LOOP=1 to also run rank, label, adapt and rollback against a local worker
    on a demo datastore (needs the worker and demo requirements in ASFDA_TEST_PYTHON or Slicer's
    Python; several minutes). See ASFDALib/selftest.py.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        logic = ASFDALogic()
        try:
            selftest.runCaseRoundTrip(self, logic, slicer)
        finally:
            logic.cleanup()
        if selftest.fullLoopRequested():
            self.setUp()
            selftest.runFullLoop(self, ASFDALogic(), processEvents=slicer.app.processEvents)
        else:
            logging.info("ASFDA: full worker loop skipped (set %s=1 to run it)", selftest.FULL_LOOP_VARIABLE)
        self.delayDisplay("Test passed")
