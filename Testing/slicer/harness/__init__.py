"""Run the unmodified ASFDA.py widget on real MRML (slicer-core) with stand-ins for what Slicer adds.

``slicer.util`` is Slicer's own file (shipped in slicer-core); ``qt``/``ctk`` come from ``pythonqt``
and the scripted-module framework from ``slicer_standins``. With ``release="v5.8.1"`` (or another tag fetched
by scripts/fetch_slicer_python.py) that release's own ``util``, ``ScriptedLoadableModule``, ``i18n``,
``parameterNodeWrapper`` (and ``packaging``) replace them (``slicer_release``), and ``mrml58`` plays 5.8's
colour-name behaviour for tags before 5.10. ``ModuleHarness`` plays the application:
it loads the module the way Slicer does (module folder on ``sys.path``, ``slicer.modules.asfda.path``),
creates the widget panel, enters and exits the module, and runs the event loop (``tick``).
"""

import importlib
import sys
import time
import types
from pathlib import Path

from . import mrml58, pythonqt, slicer_release, slicer_standins

MODULE_DIR = Path(__file__).resolve().parents[3] / "ASFDAModule"


class ModuleHarness:
    def __init__(self, slicer, tmpPath, release=None):
        """``release`` (a tag such as "v5.8.1"): that release's own framework files (``slicer_release``)."""
        self.slicer = slicer
        self.release = release
        uninstallStandins = slicer_standins.install(slicer, tmpPath)
        self.colorNames = None
        if release is None:
            self.uninstall = uninstallStandins
        else:
            uninstallRelease = slicer_release.install(slicer, release)
            # slicer-core's MRML is 5.13's: 5.8's colour-name regeneration is played by the shim.
            self.colorNames = mrml58.ColorNames58(slicer, slicer.mrmlScene, slicer_release.version(release))

            def uninstallBoth():
                self.colorNames.close()
                uninstallRelease()
                uninstallStandins()

            self.uninstall = uninstallBoth
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
