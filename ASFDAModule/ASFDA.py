"""ASFDA: rank unlabeled volumes, annotate the top few, adapt the model, in 3D Slicer.

The module is a thin client: all compute runs in the ASFDA worker (a separate process, local or
remote), so Slicer never imports torch. Worker calls run in background threads; a QTimer drains
their results on the GUI thread and the GUI is rendered from cached worker state only.
"""

import logging
import os
from typing import Annotated

import qt
import slicer
from ASFDALib import case_lease, segmentation_io, selftest, session_folder
from ASFDALib.backup_writer import BackupWriter
from ASFDALib.edits import EditTracker, SegmentationEditWatcher
from ASFDALib.effort import EffortRecorder
from ASFDALib.machine_settings import SettingsForm
from ASFDALib.model_versions import versionLabel
from ASFDALib.parameter_gui import connectParameterGui
from ASFDALib.poller import TaskRunner, tickIntervalMs, yieldToBackgroundThreads
from ASFDALib.round_report import roundsOf, roundsTable
from ASFDALib.sparse_slices import requestTooltip
from ASFDALib.sparse_view import SparseSlicesMixin
from ASFDALib.unsubmitted_view import UnsubmittedEditsMixin
from ASFDALib.worker_session import WorkerSession
from ASFDALib.worklist import COLUMNS, SORT_KEYS, JobState, unfinishedJobs
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


class ASFDAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin, SparseSlicesMixin, UnsubmittedEditsMixin):
    """The panel; its sparse-slices and unsubmitted-edits halves are in ASFDALib/sparse_view.py and
    unsubmitted_view.py, the worker dealings in the logic's session (ASFDALib/worker_session.py)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.session = None  # the logic's WorkerSession: connection, lease, jobs, case files
        self.settingsForm = None
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
        self._shownReport = None  # the GET /report reply the rounds table shows
        self._reportWanted = False  # the model versions changed since the report in hand was asked for
        self._ticking = False
        self._sceneGeneration = 0  # scene closes so far: a case asked for before one belongs to the old scene
        self.sortKey, self.sortDescending = "rank", False
        self.edits = EditTracker()
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
        self.session = self.logic.session

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
        self.ui.cancelRankButton.clicked.connect(self.onCancelRank)
        self.ui.cancelAdaptButton.clicked.connect(self.onCancelAdapt)
        self.ui.activateModelButton.clicked.connect(self.onActivateModel)
        self.setupSparseSlices()  # Next slice and the requested-slices label: ASFDALib/sparse_view.py
        self.ui.roundsLabel.visible = False  # until a worker's report is in hand

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
        self.settingsForm = SettingsForm(self.ui, qt.QSettings)  # per-computer choices: ASFDALib/machine_settings.py
        self.settingsForm.setup()
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

    def onApplicationAboutToQuit(self):
        self.keepEditsAtExit()

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
        if self.session is not None:
            for task in self.giveBack(self.session.lease.left()):
                task.done.wait(2.0)  # Slicer is closing: a short wait, the lease expires anyway
        self.editWatcher.release()
        self.removeObservers()
        if self.logic is not None:
            self.logic.cleanup()  # stops the local worker: no training run holds the GPU after Slicer exits

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
        self.giveBack(self.session.lease.left())
        self.editWatcher.release()
        self.edits.caseClosed()
        self.closeSparseCase()
        self.setParameterNode(None)
        # Let go of the editor's nodes as Slicer's Segment Editor does at a scene close: they leave the scene,
        # and an editor still pointing at them would paint into a removed segmentation.
        editor = self.ui.segmentEditorWidget
        editor.setActiveEffect(None)
        editor.setSegmentationNode(None)
        editor.setSourceVolumeNode(None)
        editor.setMRMLSegmentEditorNode(None)
        editor.removeViewObservations()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()

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
        self.pollers = self.session.pollers()
        # Another worker: its first model list is news (and fetches its report), whatever the last one showed.
        self._rendered, self._shownModels, self._shownReport = {}, None, None
        self.pokeAll(force=True)

    def pokeAll(self, force=False):
        """Start the due polls (every poll when ``force``); the on-demand report only by ``refreshReport``."""
        for poller in self.pollers.values():
            if poller.intervalS is not None:
                poller.poke(force=force)

    def refreshReport(self):
        """Ask for the per-round sums again: now, or when the fetch in flight ends (it may predate the change)."""
        self._reportWanted = True
        self.pokeReport()

    def pokeReport(self):
        poller = self.pollers.get("report")
        if self._reportWanted and poller is not None and poller.poke(force=True):
            self._reportWanted = False

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
        session = self.session
        connected, lease, jobs = session.connected, session.lease, session.jobs
        self.pokeReport()
        jobsPoll = self._fresh("jobs")
        if jobsPoll is not None:
            self.renderJobs(jobsPoll.value or [])
        worklist = self._fresh("worklist")
        if worklist is not None and worklist.value is not None:
            session.updateWorklist(*worklist.value)
            self.renderWorklist()
        models = self._fresh("models")
        if models is not None and models.value is not None:
            self.renderModels(models.value)
        report = self._fresh("report")
        if report is not None:
            self.renderReport(report.value, report.error)
        leasePoll = self._fresh("lease")
        if leasePoll is not None and leasePoll.value:
            self.ui.caseStatusLabel.text = _("Your lease on {case} expired and {name} holds it now: Submit will be "
                                             "refused.").format(case=lease.caseId, name=leasePoll.value)
        elif leasePoll is not None and lease.labelChange:
            self.ui.caseStatusLabel.text = _("The label of {case} changed since you opened it (revision {change}): "
                                             "Submit will be refused; open the case again to see it.").format(
                case=lease.caseId, change=lease.labelChange)
        # The report's own failure is shown in its table: the worker answers the rest.
        errors = [p.error for name, p in self.pollers.items() if p.error and name != "report"]
        if not connected:
            status = _("Stopping the local worker...") if session.stoppingLocalWorker else _("Not connected")
        elif errors:
            status = _("Worker not answering: {error}").format(error=errors[0])
        else:
            info = session.info or {}
            status = _("Connected to {url} as {name} ({device}, model {version}, datastore {datastore})").format(
                url=session.client.url, name=session.client.annotator, device=info.get("device", "?"),
                datastore=info.get("datastore", "?"),
                version=session.worklist.activeModelVersion or info.get("active_model_version") or "none")
        self.ui.workerStatusLabel.text = status
        self.refreshSparseSlices()
        p = self._parameterNode
        caseOpen = bool(p and p.currentCaseId and p.currentSegmentation)
        self.ui.stopLocalWorkerButton.enabled = session.launcher is not None
        self.ui.rankButton.enabled = connected and jobs.canStart("rank")
        self.ui.nextCaseButton.enabled = connected and bool(session.worklist.rows)
        self.ui.submitLabelButton.enabled = connected and caseOpen
        self.ui.adaptButton.enabled = connected and jobs.canStart("adapt")
        self.ui.cancelRankButton.enabled = connected and jobs.running("rank") is not None
        self.ui.cancelAdaptButton.enabled = connected and jobs.running("adapt") is not None
        self.ui.activateModelButton.enabled = connected and self.ui.modelVersionComboBox.count > 0

    def renderWorklist(self):
        rows = self.session.worklist.sortedRows(self.sortKey, self.sortDescending)
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
        """Progress of the newest rank and adapt job (ASFDALib/job_tracker.py follows them); ends announced."""
        update = self.session.jobs.update(jobs)
        for kind, bar in (("rank", self.ui.rankProgressBar), ("adapt", self.ui.adaptProgressBar)):
            progress = update.latest.get(kind)
            if progress is None:
                continue
            bar.value = progress.percent
            bar.setFormat(progress.describe())
            if kind == "adapt":  # the gate's verdict stays readable after the status message is gone
                lines = (progress.describe(), progress.adaptOutcome())
                self.ui.adaptStatusLabel.text = "; ".join(t for t in lines if t)
        for progress in update.finished:
            self.onJobFinished(progress)

    def renderModels(self, models):
        versions = tuple((model["version"], versionLabel(model), bool(model.get("active"))) for model in models)
        if versions == self._shownModels:
            return  # an unchanged list leaves the combo alone: an open drop-down and the choice stay
        self._shownModels = versions
        self.refreshReport()  # each adaptation round is a model version: the sums change only with them
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
            self.session.worklist.setActiveModelVersion(active)
        self.ui.activeModelLabel.text = _("Active model: {version}").format(version=active or "none")

    def renderReport(self, reply, error=None):
        """The per-round sums (cases, slices, minutes); the table is rebuilt only when the reply changed."""
        if error:
            shown = ("error", error)
            text = _("Effort per round: not available ({error})").format(error=error)
        else:
            shown, rounds = ("reply", reply), roundsOf(reply)
            text = roundsTable(rounds) if rounds is not None else ""  # a worker without a report: nothing
        if shown == self._shownReport:
            return
        self._shownReport = shown
        self.ui.roundsLabel.text = text
        self.ui.roundsLabel.visible = bool(text)

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
        self.session.setConnection(*connection)
        self.ui.workerUrlLineEdit.text = self.session.client.url
        self.startPolling()

    def onConnect(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to connect to the worker.")):  # it may ask: no wait cursor
            url, token, annotator = self.ui.workerUrlLineEdit.text, self.ui.workerTokenLineEdit.text, self.annotator()
            if not annotator:
                return
            case_lease.checkToken(url, token)
            self.ui.workerStatusLabel.text = _("Connecting to {url}...").format(url=url)
            datastore = self.settingsForm.current().datastorePath
            self.runInBackground(lambda: self.session.openConnection(url, token, annotator, datastore),
                                 self.onConnected, _("Failed to connect to the worker."))

    def onStartLocalWorker(self):
        if not self.confirmReplacingLocalWorker():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the local worker.")):  # it may ask: no wait cursor
            s, annotator = self.settingsForm.current(), self.annotator()
            if not annotator or (not s.workerPython and not self.session.ensureLocalDependencies()):
                return
            launcher = self.session.startLocalWorker(s.datastorePath, s.localPort, s.workerPython, s.device,
                                                     self.ui.workerTokenLineEdit.text)
            self.ui.workerStatusLabel.text = _("Starting local worker (log: {log})...").format(log=launcher.logPath)
            self.runInBackground(lambda: self.session.waitForLocalWorker(annotator), self.onConnected,
                                 _("The local worker did not start."))

    def confirmReplacingLocalWorker(self):
        """Starting a worker stops the running one and its jobs: ask first, naming what would stop."""
        launcher = self.session.launcher
        if launcher is None or not launcher.isRunning():
            return True
        client, jobsPoller = self.session.client, self.pollers.get("jobs")
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
        with slicer.util.tryWithErrorDisplay(_("Failed to stop the local worker.")):
            session = self.session
            # The process tree is stopped in a thread: a worker that ignores the request took ~10 s to kill.
            request = session.stopLocalWorkerRequest()
            self.pollers = {}
            if session.client is None:  # the lease was on the stopped worker: nothing to give back
                session.lease.forget()
            session.jobs.stop()
            if request is not None:
                self.runInBackground(request, lambda unused: self.updateGUIFromCache(),
                                     _("Failed to stop the local worker."))
            self.updateGUIFromCache()

    def startJob(self, kind, request, errorMessage):
        """``request`` (a session's rank or adapt request) marked the job as requested until the worker answers;
        a refusal frees the button again."""
        self.runInBackground(request, self.onJobStarted, errorMessage,
                             onFailure=lambda: self.session.jobs.requestFailed(kind))
        self.updateGUIFromCache()  # disable the button now, not at the next tick

    def onRank(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start ranking."), waitCursor=True):
            p = self._parameterNode
            self.startJob("rank", self.session.rankRequest(p.budgetK, p.slicesPerVolume),
                          _("Failed to start ranking."))

    def onAdapt(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start adaptation."), waitCursor=True):
            p = self._parameterNode
            self.startJob("adapt", self.session.adaptRequest(p.adaptSteps or None, p.usePseudoLabels),
                          _("Failed to start adaptation."))

    def onJobStarted(self, job):
        self.session.jobs.started(job)
        self.pokeAll(force=True)

    def onCancelRank(self):
        self.cancelJob("rank")

    def onCancelAdapt(self):
        self.cancelJob("adapt")

    def cancelJob(self, kind):
        """Cancel our running ``kind`` job, and only that one: a rank running beside an adaptation goes on."""
        request = self.session.cancelRequest(kind)
        if request is not None:
            self.runInBackground(request, lambda job: self.pokeAll(True), _("Failed to cancel the job."))

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
        with slicer.util.tryWithErrorDisplay(_("Failed to load the next case.")):  # it may ask: no wait cursor
            current = self._parameterNode.currentCaseId or None
            if not self.keepUnsubmittedEdits():
                return
            self.ui.caseStatusLabel.text = _("Asking the worker for your next case...")
            self.runInBackground(self.session.openNextCaseRequest(current), self.caseOpenedHandler(),
                                 _("Failed to load the next case."))

    def onBackupFailed(self, path, error):
        slicer.util.errorDisplay(_("The copy of unsubmitted edits could not be written to {path}: {error}").format(
            path=path, error=error))

    def loadCase(self, caseId):
        if not self.keepUnsubmittedEdits(caseId):
            return
        self.ui.caseStatusLabel.text = _("Loading {case} and the model's prediction...").format(case=caseId)
        self.runInBackground(self.session.openCaseRequest(caseId), self.caseOpenedHandler(),
                             _("Failed to download case {case}.").format(case=caseId))

    def caseOpenedHandler(self):
        """``onCaseOpened`` for a case asked for now: one that arrives after a scene close is given back."""
        generation = self._sceneGeneration
        return lambda opening: self.onCaseOpened(opening, generation)

    def onCaseOpened(self, opening, sceneGeneration=None):
        if opening is not None and sceneGeneration not in (None, self._sceneGeneration):
            # Asked for in a scene since closed (possibly while the module was hidden): not loaded into the new
            # one, and its lease goes back now rather than after 30 minutes.
            self.giveBack(self.session.lease.opened(opening, False))
            if opening.files:
                self.session.files.caseFilesRead(opening.files)
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
                self.giveBack(self.session.lease.opened(opening,
                                                        self._parameterNode.currentCaseId == opening.caseId))
        self.pokeAll(force=True)  # the Held-by column changed

    def giveBack(self, leases):
        return [self.tasks.submit(request) for request in self.session.giveBackRequests(leases)]

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
            self.effort.journalFolder = os.path.join(self.session.files.unsubmittedFolder(), "effort journal")
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
        with slicer.util.tryWithErrorDisplay(_("Failed to submit the label.")):  # it may ask: no wait cursor
            p = self._parameterNode
            if self.ui.segmentEditorWidget.segmentationNode() is not p.currentSegmentation:
                raise ValueError(_("The Segment Editor shows another segmentation than case {case}: "
                                   "load the case again").format(case=p.currentCaseId))
            # A copy of the segments now; the label file is written in the background with the upload.
            noStructure = False
            files = self.session.files
            try:
                label = files.snapshotLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId)
            except segmentation_io.EmptyLabelError:
                if not slicer.util.confirmOkCancelDisplay(_(
                        "Nothing is painted in case {case}. Submit it as a case without any structure "
                        "(every voxel background)?").format(case=p.currentCaseId)):
                    return
                label = files.snapshotLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId, allowEmpty=True)
                noStructure = True  # recorded by the worker as the clinician's verdict; the case leaves the pool
            label = self.sparseLabelToSubmit(label, p.currentCaseId)
            if label is None:
                return
            caseId = p.currentCaseId
            self.ui.caseStatusLabel.text = _("Uploading the label of {case}...").format(case=caseId)
            self.runInBackground(self.session.submitRequest(caseId, label, noStructure, self.effort.submitting()),
                                 self.onLabelSubmitted,
                                 _("The worker refused the label of {case}.").format(case=caseId))

    def onLabelSubmitted(self, reply):
        self.edits.labelSubmitted(reply["case_id"])
        self.effort.labelSubmitted(reply["case_id"])
        self.session.lease.submitted(reply["case_id"])
        self.session.worklist.markLabeled(reply["case_id"])
        self.ui.caseStatusLabel.text = _("Label of {case} saved (values {values}).").format(
            case=reply["case_id"], values=reply.get("label_values"))
        self.renderWorklist()
        self.pokeAll(force=True)

    def onActivateModel(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to activate the model version."), waitCursor=True):
            version = self.ui.modelVersionComboBox.currentData
            self.runInBackground(self.session.activateRequest(version), self.onModelActivated,
                                 _("Failed to activate model {version}.").format(version=version))

    def onModelActivated(self, reply):
        version = reply.get("active_model_version")
        self.session.worklist.setActiveModelVersion(version)
        slicer.util.showStatusMessage(_("Model {version} is active.").format(version=version), 5000)
        self.renderWorklist()
        self.pokeAll(force=True)


class ASFDALogic(ScriptedLoadableModuleLogic):
    """Everything but the GUI; usable from the Python console and the test below.

    ``session`` (ASFDALib/worker_session.py) deals with the worker: connection, local worker, lease, jobs,
    requests and case files; the logic puts cases into the scene.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        session_folder.removeStaleSessionFolders()  # downloads a crashed session left behind
        # Downloads of this session only, in their own folder.
        self.session = WorkerSession(self.moduleDir(), session_folder.createSessionFolder())

    def cleanup(self):
        self.session.close()

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

    def loadCase(self, files, parameterNode=None):
        """Replace the previous case's nodes with this case's volume and pre-filled segmentation."""
        scene = slicer.mrmlScene
        if parameterNode is not None:
            for node in (parameterNode.currentSegmentation, parameterNode.currentVolume):
                segmentation_io.removeNodeWithDisplayNodes(scene, node)
        caseId, caseFiles = files["caseId"], self.session.files
        prepared = files.get("prepared")
        try:
            if prepared is not None:  # decoded in the background (fetchCase): raw files, values checked
                volume = segmentation_io.loadScalarVolume(scene, prepared.image, caseId, prepared.windowLevel)
                segmentation = segmentation_io.loadSegmentationFile(scene, prepared.segmentation, f"{caseId} label")
            else:
                volume = segmentation_io.loadScalarVolume(scene, files["image"], caseId)
                segmentation = segmentation_io.loadPredictionAsSegmentation(
                    scene, files["prediction"], caseFiles.labels, caseFiles.labelColors, volume, name=f"{caseId} label")
            segmentation_io.markCaseAsStored(scene, volume, segmentation, files.get("folder") or caseFiles.workDir,
                                             caseId)
        finally:
            caseFiles.caseFilesRead(files)
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
