"""Per-computer choices (worker address, local port and Python, device, datastore, annotator).

They live in the application settings (``qt.QSettings``), not in the scene's parameter node:
scenes are shared between people and computers, and a path or port from someone else's computer
is wrong here. The settings object is passed in, so this works with any QSettings-like object.
``SettingsForm`` shows them in the Worker section and saves each change.
"""

from dataclasses import dataclass, fields

DEVICES = ("auto", "cuda", "cpu")
PREFIX = "ASFDA/"
MIN_PORT, MAX_PORT = 1024, 65535


@dataclass
class MachineSettings:
    workerUrl: str = "http://127.0.0.1:8765"
    localPort: int = 8765
    workerPython: str = ""
    device: str = "auto"
    datastorePath: str = ""
    annotator: str = ""

    @classmethod
    def load(cls, settings):
        values = {}
        for f in fields(cls):
            key = PREFIX + f.name
            if settings.contains(key):
                values[f.name] = settings.value(key)
        return cls.fromValues(values)

    @classmethod
    def fromValues(cls, values):
        """Coerce stored values (INI files give strings back); a bad value falls back to the default."""
        result = cls()
        for name, value in values.items():
            if value is None or not hasattr(result, name):
                continue
            if name == "localPort":
                try:
                    port = int(value)
                except (TypeError, ValueError):
                    continue
                if MIN_PORT <= port <= MAX_PORT:
                    result.localPort = port
            elif name == "device":
                if str(value) in DEVICES:
                    result.device = str(value)
            else:
                text = str(value).strip()
                # An empty path shown as "." means "not chosen"; never keep it.
                setattr(result, name, "" if name == "datastorePath" and text == "." else text)
        return result

    def save(self, settings):
        for f in fields(self):
            settings.setValue(PREFIX + f.name, getattr(self, f.name))


class SettingsForm:
    """The Worker section's per-computer fields: filled from the settings once, saved on every change.

    ``ui``: the module's widgets (workerUrlLineEdit, localPortSpinBox, workerPythonLineEdit, deviceComboBox,
    datastorePathLineEdit, annotatorLineEdit); ``newSettings``: makes a QSettings-like object (``qt.QSettings``).
    """

    def __init__(self, ui, newSettings):
        self.ui = ui
        self._newSettings = newSettings

    def setup(self):
        ui = self.ui
        ui.deviceComboBox.clear()
        for device in DEVICES:
            ui.deviceComboBox.addItem(device)
        ui.localPortSpinBox.setRange(MIN_PORT, MAX_PORT)
        s = MachineSettings.load(self._newSettings())
        ui.workerUrlLineEdit.text = s.workerUrl
        ui.localPortSpinBox.value = s.localPort
        ui.workerPythonLineEdit.text = s.workerPython
        ui.deviceComboBox.currentIndex = DEVICES.index(s.device)
        ui.datastorePathLineEdit.currentPath = s.datastorePath
        ui.annotatorLineEdit.text = s.annotator
        for signal in (ui.workerUrlLineEdit.textChanged, ui.localPortSpinBox.valueChanged,
                       ui.workerPythonLineEdit.textChanged, ui.deviceComboBox.currentIndexChanged,
                       ui.datastorePathLineEdit.currentPathChanged, ui.annotatorLineEdit.textChanged):
            signal.connect(self.save)

    def current(self):
        """The choices as the fields show them now."""
        ui = self.ui
        return MachineSettings.fromValues({
            "workerUrl": ui.workerUrlLineEdit.text, "localPort": ui.localPortSpinBox.value,
            "workerPython": ui.workerPythonLineEdit.text, "device": ui.deviceComboBox.currentText,
            "datastorePath": ui.datastorePathLineEdit.currentPath, "annotator": ui.annotatorLineEdit.text})

    def save(self, *unused):
        self.current().save(self._newSettings())
