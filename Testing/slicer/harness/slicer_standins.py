"""Stand-ins for the parts of Slicer's Python API that the slicer-core wheel lacks.

Written for this project from Slicer's documentation and the behaviour of its public API (no code
copied). Each part names the Slicer behaviour it stands in for:

- ``qMRMLWidget``: a QWidget with ``setMRMLScene``/``mrmlScene`` (Slicer's qMRMLWidget).
- ``qMRMLSegmentEditorWidget``: the embedded Segment Editor's Python-visible API; it only has the
  methods and properties listed in ``slicer_api_lists.SEGMENT_EDITOR_API`` (read from the header at the tags
  named there), so a call to a method Slicer lacks fails here too. Node selector visibility and the
  edited nodes are state a test can read.
- ``App``: ``slicer.app`` (testingEnabled, topLevelWidgets with a main window named
  ``qSlicerMainWindow`` and a status bar, override cursors, processEvents, defaultScenePath,
  moduleManager signals; no layoutManager, as there are no views). Testing mode is off, so
  ``slicer.util`` really shows its dialogs (recorded).
- ``scriptedLoadableModule``: ``slicer.ScriptedLoadableModule``: the module sets ``parent``
  fields; the widget builds a qMRMLWidget parent with a vertical layout when none is given and
  finds resources under ``Resources/`` next to the module file (``slicer.modules.<name>.path``);
  the logic's ``getParameterNode`` returns the scene's ``vtkMRMLScriptedModuleNode`` singleton whose
  tag is the module name, creating it when missing; the test class is a unittest.TestCase with
  ``delayDisplay``.
- ``parameterNodeWrapper``: ``slicer.parameterNodeWrapper``: typed fields stored in the parameter
  node (values as parameters, MRML nodes as node references), defaults written when absent,
  ``WithinRange``/``Choice``/``Minimum``/``Maximum`` checked on write; ``connectGui(ui)`` binds every
  widget carrying the ``SlicerParameterName`` property, pushes values into the widgets and writes
  widget edits back, and observes the node's ModifiedEvent to refresh every bound GUI (the observer
  stays after ``disconnectGui``); a ``QSpinBox`` takes its range from ``WithinRange``; a ``QComboBox``
  bound to a ``Choice`` is cleared and refilled when bound. ``connectGui`` returns a tag from Slicer
  5.10 on and ``None`` on 5.8 (``SLICER_VERSION``), where ``disconnectGui(None)`` disconnects nothing;
  ``connectParametersToGui(mapping)`` returns the tag on every release.
- ``i18n``: ``slicer.i18n.tr`` and ``translate`` (identity, recording the contexts used).
"""

import logging
import os
import pathlib
import sys
import types
import typing
import unittest

import vtk

from . import pythonqt as qt

SLICER_VERSION = [(5, 10)]  # a list so tests can switch it; (5, 8) imitates the older connectGui


class qMRMLWidget(qt.QWidget):
    SIGNALS = ("mrmlSceneChanged(vtkMRMLScene*)",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class SegmentEditorEffect:
    """A registered effect, by name (what the editor's effect buttons show)."""

    def __init__(self, name):
        self.name = name


class qSlicerSegmentEditorEffectFactory(qt.QObject):
    """The application-wide effect registry: Slicer's core effects first, extensions' effects later.

    As in Slicer, an effect registered after an editor widget was created appears in that editor only if the
    editor's ``updateEffectList()`` is called (Slicer's Segment Editor module does it on ``effectRegistered``).
    """

    SIGNALS = ("effectRegistered(QString)",)
    _instance = None
    CORE_EFFECTS = ("Paint", "Draw", "Erase", "Level tracing", "Grow from seeds", "Threshold", "Scissors")

    def __init__(self):
        super().__init__()
        self._effects = [SegmentEditorEffect(name) for name in self.CORE_EFFECTS]

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def registerEffect(self, effect):
        if any(e.name == effect.name for e in self._effects):
            return False
        self._effects.append(effect)
        self.effectRegistered.emit(effect.name)
        return True

    def registeredEffects(self):
        return list(self._effects)


class qMRMLSegmentEditorWidget(qMRMLWidget):
    PROPERTIES = ("segmentationNodeSelectorVisible", "sourceVolumeNodeSelectorVisible")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._editorNode = self._segmentation = self._source = self._effect = None
        self._selectorVisible = {"segmentation": True, "source": True}
        self.shortcutsInstalled = False
        self.viewsObserved = False
        self._effectNames = []
        self.updateEffectList()  # Slicer's widget takes the effects registered so far when it is built

    def updateEffectList(self):
        known = set(self._effectNames)
        factory = qSlicerSegmentEditorEffectFactory.instance()
        self._effectNames += [e.name for e in factory.registeredEffects() if e.name not in known]

    def availableEffectNames(self):
        return list(self._effectNames)

    # properties of the header, readable as attributes in PythonQt
    @property
    def segmentationNodeSelectorVisible(self):
        return self._selectorVisible["segmentation"]

    @property
    def sourceVolumeNodeSelectorVisible(self):
        return self._selectorVisible["source"]

    def setSegmentationNodeSelectorVisible(self, visible):
        self._selectorVisible["segmentation"] = bool(visible)

    def setSourceVolumeNodeSelectorVisible(self, visible):
        self._selectorVisible["source"] = bool(visible)

    def setMRMLSegmentEditorNode(self, node):
        self._editorNode = node

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        self._segmentation = node
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSegmentationNode(node)

    def segmentationNode(self):
        return self._segmentation

    def setSourceVolumeNode(self, node):
        self._source = node
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSourceVolumeNode(node)

    def sourceVolumeNode(self):
        return self._source

    def setActiveEffect(self, effect):
        self._effect = effect

    def activeEffect(self):
        return self._effect

    def installKeyboardShortcuts(self, parent=None):
        self.shortcutsInstalled = True

    def setupViewObservations(self):
        self.viewsObserved = True

    def removeViewObservations(self):
        self.viewsObserved = False

    def updateWidgetFromMRML(self):
        pass

    def uninstallKeyboardShortcuts(self):
        self.shortcutsInstalled = False


class _StatusBar:
    def __init__(self):
        self.messages = []

    def showMessage(self, message, duration=0):
        self.messages.append(message)


class _MainWindow(qt.QWidget):
    def __init__(self):
        super().__init__()
        self.name = "qSlicerMainWindow"
        self._statusBar = _StatusBar()

    def statusBar(self):
        return self._statusBar


class _ModuleManager(qt.QObject):
    SIGNALS = ("moduleAboutToBeUnloaded(QString)",)


class App:
    applicationName = "Slicer"

    def __init__(self, defaultScenePath):
        self.mainWindow = _MainWindow()
        self.defaultScenePath = str(defaultScenePath)
        self._moduleManager = _ModuleManager()
        self.processEventsHook = None
        # Emitted by the harness's quit(), as Qt does when the event loop ends: after "Save before exit?",
        # before the module widgets' cleanup(), with the scene still holding every node.
        self.aboutToQuit = qt.Signal(None, "aboutToQuit()")

    def quit(self):
        self.aboutToQuit.emit()

    def testingEnabled(self):
        return False

    def translate(self, context, text):
        """QCoreApplication::translate with no translation loaded (what a release's own i18n.py calls)."""
        TRANSLATION_CONTEXTS.append((context, text))
        return text

    def topLevelWidgets(self):
        return [self.mainWindow]

    def setOverrideCursor(self, shape):
        qt.QApplication.setOverrideCursor(shape)

    def restoreOverrideCursor(self):
        qt.QApplication.restoreOverrideCursor()

    def activeModalWidget(self):
        return qt.QApplication.activeModalWidget()

    def processEvents(self):
        if self.processEventsHook is not None:
            self.processEventsHook()

    def moduleManager(self):
        return self._moduleManager

    def layoutManager(self):
        return None  # no views in this harness; slicer.util skips fitting slice views without one

    def startupEnvironment(self):
        return dict(os.environ)


# -- slicer.i18n --------------------------------------------------------------------------------

TRANSLATION_CONTEXTS = []


def _makeI18n():
    module = types.ModuleType("slicer.i18n")

    def tr(text):
        return text

    def translate(context, text):
        TRANSLATION_CONTEXTS.append((context, text))
        return text

    module.tr, module.translate = tr, translate
    return module


# -- slicer.ScriptedLoadableModule ---------------------------------------------------------------


def _makeScriptedLoadableModule(slicer):
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__
            parent.title, parent.categories, parent.dependencies = "", [], []
            parent.contributors, parent.helpText, parent.acknowledgementText = [], "", ""
            icon = os.path.join(os.path.dirname(parent.path), "Resources", "Icons", self.moduleName + ".png")
            if os.path.isfile(icon):
                parent.icon = qt.QIcon(icon)

        def resourcePath(self, filename):
            return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Widget")]
            self.developerMode = False
            if parent is None:
                parent = slicer.qMRMLWidget()
                parent.setLayout(qt.QVBoxLayout())
                parent.setMRMLScene(slicer.mrmlScene)
            self.parent = parent
            self.layout = parent.layout()
            slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onUnload)

        def _onUnload(self, moduleName):
            if moduleName == self.moduleName:
                self.cleanup()

        def resourcePath(self, filename):
            path = slicer.util.modulePath(self.moduleName)
            return os.path.join(os.path.dirname(path), "Resources", filename)

        def setup(self):
            pass

        def cleanup(self):
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Logic")]

        def getParameterNode(self):
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag(self.moduleName)
                node.SetName(scene.GenerateUniqueName(self.moduleName))
                node.SetAttribute("ModuleName", self.moduleName)
                node = scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.messageDelay = 0

        def delayDisplay(self, message, requestedDelay=None, msec=None):
            logging.info(message)

        def runTest(self):
            pass

    for cls in (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    ):
        setattr(module, cls.__name__, cls)
    return module


# -- slicer.parameterNodeWrapper -----------------------------------------------------------------


class WithinRange:
    def __init__(self, low, high):
        self.low, self.high = low, high

    def check(self, value):
        if not self.low <= value <= self.high:
            raise ValueError(f"{value} is not within [{self.low}, {self.high}]")


class Minimum(WithinRange):
    def __init__(self, low):
        super().__init__(low, float("inf"))


class Maximum(WithinRange):
    def __init__(self, high):
        super().__init__(float("-inf"), high)


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def check(self, value):
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {self.choices}")


_NOT_SET = object()
# Every ModifiedEvent callback a wrapper ever added, held here. VTK's Python objects let the garbage collector
# see the callables of their observers, so a wrapper the widget dropped (node -> callback -> wrapper -> node)
# was collected as a cycle while the C++ node still called the freed callback: a segfault whenever a collection
# happened to run between a scene close and the next parameter write. Slicer keeps such wrappers alive too.
_OBSERVER_CALLBACKS = []


class _Field:
    def __init__(self, name, annotation, default):
        self.name = name
        self.validators = []
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *self.validators = typing.get_args(annotation)
        self.type = annotation
        self.isNode = isinstance(annotation, type) and issubclass(annotation, vtk.vtkObject)
        if default is _NOT_SET:
            default = {str: "", int: 0, float: 0.0, bool: False, pathlib.Path: pathlib.Path()}.get(annotation)
            if default is None and not self.isNode:
                raise TypeError(f"no default for {name}: {annotation}")
        self.default = default

    def write(self, node, value):
        if self.isNode:
            if value is not None and not isinstance(value, self.type):
                raise TypeError(f"{self.name} takes a {self.type.__name__}")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        value = self.type(value)
        for validator in self.validators:
            validator.check(value)
        node.SetParameter(self.name, str(int(value)) if self.type is bool else str(value))

    def read(self, node):
        if self.isNode:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text in ("1", "True", "true")
        return self.type(text)


def _connectorFor(field, widget):
    """(read, write, signal) for one bound widget, as Slicer's GUI connectors pair types and widgets."""
    if isinstance(widget, qt.QSpinBox) and field.type is int:
        for validator in field.validators:
            if isinstance(validator, WithinRange):
                widget.setRange(max(validator.low, -(2**31)), min(validator.high, 2**31 - 1))
        return (lambda: widget.value), (lambda v: widget.setValue(v)), widget.valueChanged
    if isinstance(widget, qt.QCheckBox) and field.type is bool:
        return (lambda: widget.checked), (lambda v: widget.setChecked(v)), widget.stateChanged
    if isinstance(widget, qt.QComboBox):
        choices = next(v.choices for v in field.validators if isinstance(v, Choice))
        widget.clear()  # refilled on every bind; each change is signalled
        for choice in choices:
            widget.addItem(str(choice))
        return (
            (lambda: widget.currentText),
            (lambda v: widget.setCurrentIndex(widget.findText(str(v)))),
            widget.currentIndexChanged,
        )
    if isinstance(widget, qt.QLineEdit) and field.type is str:
        return (lambda: widget.text), (lambda v: widget.setText(v)), widget.textChanged
    if isinstance(widget, qt.ctkPathLineEdit) and field.type is pathlib.Path:
        return (
            (lambda: pathlib.Path(widget.currentPath)),
            (lambda v: widget.setCurrentPath(str(v))),
            widget.currentPathChanged,
        )
    raise TypeError(f"no GUI connector for {type(widget).__name__} and {field.type}")


def parameterNodeWrapper(cls):
    annotations = typing.get_type_hints(cls, include_extras=True)
    fields = {name: _Field(name, ann, cls.__dict__.get(name, _NOT_SET)) for name, ann in annotations.items()}

    class Wrapper:
        allParameters = fields

        def __init__(self, parameterNode):
            self.parameterNode = parameterNode
            self._guis = {}
            self._nextTag = 0
            self._updating = False
            for field in fields.values():
                if field.isNode or parameterNode.GetParameter(field.name) == "":
                    if not field.isNode:
                        field.write(parameterNode, field.default)

        def __getattr__(self, name):
            if name in fields:
                return fields[name].read(self.parameterNode)
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name in fields:
                fields[name].write(self.parameterNode, value)
            else:
                object.__setattr__(self, name, value)

        def connectGui(self, gui):
            bound = {}
            for widget in vars(gui).values():
                name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
                if name:
                    if name not in fields:
                        raise ValueError(f"Cannot find a param with the given name: {name}")
                    bound[name] = widget
            tag = self.connectParametersToGui(bound)
            return None if SLICER_VERSION[0] < (5, 10) else tag

        def connectParametersToGui(self, bound):
            for name in bound:
                if name not in fields:
                    raise ValueError(f"Cannot find a param with the given name: {name}")
            tag = self._nextTag
            self._nextTag += 1
            connectors = {}
            self._guis[tag] = connectors
            for name, widget in bound.items():
                read, write, signal = _connectorFor(fields[name], widget)
                write(getattr(self, name))

                def onWidgetChanged(*args, name=name, read=read):
                    if not self._updating:
                        setattr(self, name, read())

                signal.connect(onWidgetChanged)
                connectors[name] = (write, signal, onWidgetChanged)
            callback = lambda caller, event: self._refresh()  # noqa: E731
            _OBSERVER_CALLBACKS.append(callback)
            self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, callback)
            return tag

        def disconnectGui(self, tag):
            for _write, signal, slot in self._guis.pop(tag, {}).values():
                signal.disconnect(slot)

        def _refresh(self):
            if self._updating:
                return
            self._updating = True
            try:
                for connectors in self._guis.values():
                    for name, (write, _signal, _slot) in connectors.items():
                        write(getattr(self, name))
            finally:
                self._updating = False

    Wrapper.__name__ = Wrapper.__qualname__ = cls.__name__
    Wrapper.__doc__ = cls.__doc__
    return Wrapper


def _makeParameterNodeWrapper():
    module = types.ModuleType("slicer.parameterNodeWrapper")
    for obj in (parameterNodeWrapper, WithinRange, Minimum, Maximum, Choice):
        setattr(module, obj.__name__, obj)
    return module


def install(slicer, tmpPath):
    """Publish the stand-ins where Slicer has them; returns a function that undoes it."""
    savedModules = {
        name: sys.modules.get(name)
        for name in ("qt", "ctk", "slicer.i18n", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper")
    }
    savedAttrs = {
        name: getattr(slicer, name, _NOT_SET)
        for name in (
            "app",
            "qMRMLWidget",
            "qMRMLSegmentEditorWidget",
            "qSlicerSegmentEditorEffectFactory",
            "i18n",
            "ScriptedLoadableModule",
            "parameterNodeWrapper",
            "selfTests",
        )
    }
    qt.reset()
    TRANSLATION_CONTEXTS.clear()
    qtModule = types.ModuleType("qt")
    ctkModule = types.ModuleType("ctk")
    for name in dir(qt):
        obj = getattr(qt, name)
        if name.startswith("ctk"):
            setattr(ctkModule, name, obj)
        elif name.startswith("Q") or name == "Qt":
            setattr(qtModule, name, obj)
    qt.WIDGET_CLASSES.update({"qMRMLWidget": qMRMLWidget, "qMRMLSegmentEditorWidget": qMRMLSegmentEditorWidget})
    submodules = {
        "slicer.i18n": _makeI18n(),
        "slicer.ScriptedLoadableModule": _makeScriptedLoadableModule(slicer),
        "slicer.parameterNodeWrapper": _makeParameterNodeWrapper(),
    }
    sys.modules.update({"qt": qtModule, "ctk": ctkModule, **submodules})
    for fullName, module in submodules.items():
        setattr(slicer, fullName.split(".")[1], module)
    slicer.app = App(tmpPath)
    slicer.qMRMLWidget, slicer.qMRMLSegmentEditorWidget = qMRMLWidget, qMRMLSegmentEditorWidget
    qSlicerSegmentEditorEffectFactory._instance = None  # a fresh application: only the core effects
    slicer.qSlicerSegmentEditorEffectFactory = qSlicerSegmentEditorEffectFactory

    def uninstall():
        for name, module in savedModules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in savedAttrs.items():
            if value is _NOT_SET:
                if hasattr(slicer, name):
                    delattr(slicer, name)
            else:
                setattr(slicer, name, value)

    return uninstall
