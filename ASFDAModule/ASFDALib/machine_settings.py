"""Per-computer choices (worker address, local port and Python, device, datastore, annotator).

They live in the application settings (``qt.QSettings``), not in the scene's parameter node:
scenes are shared between people and computers, and a path or port from someone else's computer
is wrong here. The settings object is passed in, so this works with any QSettings-like object.
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
