"""Run the unmodified ASFDA.py widget on real MRML (slicer-core) with stand-ins for what Slicer adds.

``slicer.util`` is Slicer's own file (shipped in slicer-core); ``qt``/``ctk`` come from ``pythonqt``
and the scripted-module framework from ``slicer_standins``. ``ModuleHarness`` plays the application:
it loads the module the way Slicer does (module folder on ``sys.path``, ``slicer.modules.asfda.path``),
creates the widget panel, enters and exits the module, and runs the event loop (``tick``).
"""

import importlib
import sys
import time
import types
from pathlib import Path

from . import pythonqt, slicer_standins

MODULE_DIR = Path(__file__).resolve().parents[3] / "ASFDAModule"


class ModuleHarness:
    def __init__(self, slicer, tmpPath):
        self.slicer = slicer
        self.uninstall = slicer_standins.install(slicer, tmpPath)
        slicer.modules.asfda = types.SimpleNamespace(path=str(MODULE_DIR / "ASFDA.py"))
        sys.modules.pop("ASFDA", None)  # a fresh import sees this harness's stand-ins
        self.module = importlib.import_module("ASFDA")
        self.modulePanel = types.SimpleNamespace(path=str(MODULE_DIR / "ASFDA.py"))
        self.moduleObject = self.module.ASFDA(self.modulePanel)
        self.panel = slicer.qMRMLWidget()
        self.panel.setLayout(pythonqt.QVBoxLayout())
        self.panel.isEntered = False
        self.widget = self.module.ASFDAWidget(self.panel)
        self.widget.setup()

    @property
    def ui(self):
        return self.widget.ui

    def enter(self):
        self.panel.isEntered = True
        self.widget.enter()

    def exit(self):
        self.widget.exit()
        self.panel.isEntered = False

    def tick(self):
        pythonqt.fireTimers()

    def tickUntil(self, condition, timeoutS=10.0, message="condition"):
        deadline = time.monotonic() + timeoutS
        while time.monotonic() < deadline:
            self.tick()
            if condition():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {message}")

    def connect(self, url, annotator="Dr. Ada"):
        """Press Connect; ``annotator`` answers the name question when no name is stored yet."""
        if not self.ui.annotatorLineEdit.text:
            pythonqt.TEXT_ANSWERS.append(annotator)
        self.ui.workerUrlLineEdit.text = url
        assert self.ui.connectButton.click()
        self.tickUntil(lambda: self.widget.session.client is not None and self.ui.rankButton.enabled, message="connect")
        self.tickUntil(lambda: self.ui.worklistTable.rowCount() > 0, message="worklist")

    def close(self):
        self.widget.cleanup()
        self.uninstall()
        sys.modules.pop("ASFDA", None)

    @property
    def dialogs(self):
        return pythonqt.DIALOGS

    @property
    def slotErrors(self):
        return pythonqt.SLOT_ERRORS
