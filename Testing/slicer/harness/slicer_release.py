"""One Slicer release's own Python framework files in place of the harness's home-made ones.

``scripts/fetch_slicer_python.py`` copies ``Base/Python/slicer/{ScriptedLoadableModule,i18n,util,packaging}.py``
and ``parameterNodeWrapper/`` of a tag into ``<cache>/<tag>/slicer/``. ``install`` loads them as
``slicer.<name>`` on top of slicer-core's MRML and ``slicer_standins``' Qt layer, so the module meets that
release's real parameter-node wrapper (GUI connectors, serializers, observers), scripted-module base classes
and ``slicer.util`` functions. What needs the application stays stood in: ``qt``/``ctk`` (``pythonqt``),
``slicer.app`` and the MRML widgets (``slicer_standins``). The application reports the tag's version, so the
module's version gates (``ASFDALib.compat``) take that release's branch.
"""

import importlib.util
import re
import sys
from pathlib import Path

TAGS = ("v5.8.1", "v5.10.0", "v5.12.3")
FETCH_HINT = "python scripts/fetch_slicer_python.py [--repo PATH]"
# Loaded in this order: ScriptedLoadableModule imports i18n; the wrapper's modules read slicer.util lazily.
# The slicer.q* classes the fetched files name (grep -oh "slicer\.q[A-Za-z]*" over the cache).
SLICER_WIDGET_NAMES = ("qMRMLNodeComboBox", "qMRMLRangeWidget", "qMRMLScreenShotDialog", "qMRMLSliderWidget",
                       "qMRMLSpinBox", "qMRMLUtils", "qSlicerScriptedLoadableModule",
                       "qSlicerScriptedLoadableModuleWidget", "qSlicerWidget")
MODULES = ("i18n", "util", "packaging", "parameterNodeWrapper", "ScriptedLoadableModule")


def cacheRoot():
    """The fetch script's cache folder (one definition: the script's own)."""
    scripts = Path(__file__).resolve().parents[3] / "scripts"
    spec = importlib.util.spec_from_file_location("_fetch_slicer_python", scripts / "fetch_slicer_python.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cacheRoot()


def releaseFolder(tag):
    """``<cache>/<tag>/slicer`` when the fetch script filled it, else None."""
    folder = cacheRoot() / tag / "slicer"
    return folder if (folder / "util.py").is_file() and (folder / "parameterNodeWrapper").is_dir() else None


def skipReason(tag):
    return f"Slicer {tag} Python files not cached: run {FETCH_HINT}"


def version(tag):
    """(major, minor) of a tag such as ``v5.10.0``."""
    major, minor = re.match(r"v(\d+)\.(\d+)", tag).groups()
    return int(major), int(minor)


def _load(fullName, path):
    package = path.is_dir()
    location = path / "__init__.py" if package else path
    spec = importlib.util.spec_from_file_location(
        fullName, location, submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullName] = module  # before running it: the package's modules import each other by name
    spec.loader.exec_module(module)
    return module


class _MissingClass:
    """A Qt/CTK/MRML-widget class the stand-ins lack: the real files name many in ``isinstance`` tests (a
    widget of it never exists here, so no test matches), but building one is an error."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__qualname__} has no stand-in in the harness")


def _placeholdersForMissingClasses():
    """Give ``qt``/``ctk`` (and ``slicer``'s q* widgets) a class for every name they lack; returns an undo."""
    made = {}

    def placeholderFor(moduleName):
        def getattr_(name):
            if name.startswith("__"):
                raise AttributeError(name)
            key = (moduleName, name)
            if key not in made:
                made[key] = type(name, (_MissingClass,), {"__qualname__": f"{moduleName}.{name}"})
            return made[key]

        return getattr_

    modules = [sys.modules["qt"], sys.modules["ctk"]]
    for module in modules:
        module.__getattr__ = placeholderFor(module.__name__)

    # slicer-core's package is no stand-in to extend: the widget classes the real files name are listed.
    slicer = sys.modules["slicer"]
    added = [n for n in SLICER_WIDGET_NAMES if not hasattr(slicer, n)]
    for name in added:
        setattr(slicer, name, placeholderFor("slicer")(name))

    def undo():
        for module in modules:
            module.__dict__.pop("__getattr__", None)
        for name in added:
            delattr(slicer, name)

    return undo


# Every wrapper that bound a GUI, held for the process (as slicer_standins' _OBSERVER_CALLBACKS).
_BOUND_WRAPPERS = []


def _keepBoundWrappersAlive(wrapperModule):
    """The wrapper's GUI observer (``lambda caller, event: _updateGUIFromParameterNode(self)``) and the wrapper
    form a cycle through the node. slicer-core's VTK (9.6) lets the garbage collector see observer callables,
    so a wrapper the widget dropped at a scene close was collected while the C++ node still called the freed
    callback: a segfault at the next parameter write. The harness keeps them, as slicer_standins does."""
    original = wrapperModule._connectParametersToGui

    def connectParametersToGui(self, mapping):
        _BOUND_WRAPPERS.append(self)
        return original(self, mapping)

    # Read by name when @parameterNodeWrapper decorates a class and by _connectGui: both after this runs.
    wrapperModule._connectParametersToGui = connectParametersToGui


def install(slicer, tag):
    """Load ``tag``'s files as ``slicer.<name>``; call after ``slicer_standins.install``. Returns an undo."""
    folder = releaseFolder(tag)
    if folder is None:
        raise FileNotFoundError(skipReason(tag))
    names = [n for n in MODULES if (folder / n).is_dir() or (folder / f"{n}.py").is_file()]
    savedModules = {k: v for k, v in sys.modules.items() if k == "slicer.packaging" or any(
        k == f"slicer.{n}" or k.startswith(f"slicer.{n}.") for n in MODULES)}
    savedAttrs = {n: getattr(slicer, n) for n in MODULES if hasattr(slicer, n)}
    for name in list(sys.modules):
        if any(name == f"slicer.{n}" or name.startswith(f"slicer.{n}.") for n in MODULES):
            del sys.modules[name]
    restoreQt = _placeholdersForMissingClasses()
    major, minor = version(tag)
    slicer.app.majorVersion, slicer.app.minorVersion = major, minor
    for name in names:
        path = folder / name if (folder / name).is_dir() else folder / f"{name}.py"
        setattr(slicer, name, _load(f"slicer.{name}", path))
    _keepBoundWrappersAlive(sys.modules["slicer.parameterNodeWrapper.wrapper"])

    def uninstall():
        restoreQt()
        for name in list(sys.modules):
            if any(name == f"slicer.{n}" or name.startswith(f"slicer.{n}.") for n in MODULES):
                del sys.modules[name]
        sys.modules.update(savedModules)
        for name in MODULES:
            if name in savedAttrs:
                setattr(slicer, name, savedAttrs[name])
            elif hasattr(slicer, name):
                delattr(slicer, name)

    return uninstall
