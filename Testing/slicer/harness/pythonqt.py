"""A pure-Python stand-in for the ``qt`` and ``ctk`` modules as PythonQt exposes them inside Slicer.

Written for this project from PythonQt's and Qt's documented behaviour (no code copied). What it imitates,
because the module relies on it:

- Qt properties are Python attributes (``label.text = "x"``, ``button.enabled``); setting a property
  whose widget has a change signal emits it, as the C++ setter would (``spin.value = 3`` emits
  ``valueChanged(int)``), unless ``blockSignals(True)``.
- Signals are attributes with ``connect``/``disconnect``; ``obj.connect("clicked()", slot)`` connects by
  signature string. A slot taking fewer arguments than the signal carries is called with the leading
  ones only (PythonQt does this). An exception in a slot does not reach the emitter: PythonQt prints
  it and goes on. Here it is also recorded in ``SLOT_ERRORS`` so a test can fail on it.
- ``QUiLoader().load(QFile)`` builds the widget tree from a ``.ui`` file; properties from the file are
  applied (dynamic ones such as ``SlicerParameterName`` are kept for ``property()``), ``objectName``
  is exposed as ``name`` (what ``slicer.util.childWidgetVariables`` reads).
- ``QTimer`` never fires by itself: the harness fires started timers (``fireTimers``), which stands
  for Slicer's event loop delivering ``timeout()``.
- ``QSettings`` is one in-memory store per process (``SETTINGS``), as one user's application settings.
- ``ctkMessageBox.exec_()`` records the dialog in ``DIALOGS`` (with whether a wait cursor was over it) and
  returns the next scripted answer
  (``ANSWERS``; Ok when none, taken when the dialog opens), standing in for a person clicking a button.
- A modal dialog (``exec_``/``exec``, ``QInputDialog.getText``, so every ``slicer.util`` question and
  message box) runs a nested event loop while it waits for the person, as Qt's ``QDialog::exec`` does:
  ``NESTED_LOOP_PASSES`` passes of ``fireTimers`` (so pending timers and the continuations they deliver
  run under the dialog), then each ``WHILE_MODAL`` hook (a test's way to let background work finish while
  the dialog is open). While it runs the dialog is ``QApplication.activeModalWidget()``.
- ``QInputDialog.getText`` returns the text alone, as PythonQt does (Qt's ``bool *ok`` is not exposed; a
  cancelled dialog gives an empty string): the next of ``TEXT_ANSWERS`` (empty when none), recorded in
  ``DIALOGS``.
"""

import inspect
import logging
import xml.etree.ElementTree as ET

SLOT_ERRORS = []
DIALOGS = []
ANSWERS = []
TEXT_ANSWERS = []
SETTINGS = {}
TIMERS = []
VISIBLE_MESSAGE_BOXES = []
MODAL_STACK = []  # modal dialogs open now, innermost last
WHILE_MODAL = []  # hooks run in each modal dialog's nested loop, given the dialog
NESTED_LOOP_PASSES = [2]  # event-loop passes a modal dialog runs before the person answers


def reset():
    for store in (SLOT_ERRORS, DIALOGS, ANSWERS, TEXT_ANSWERS, TIMERS, VISIBLE_MESSAGE_BOXES, MODAL_STACK,
                  WHILE_MODAL):
        store.clear()
    NESTED_LOOP_PASSES[0] = 2
    SETTINGS.clear()
    QApplication._cursors.clear()


def _arity(slot):
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class Signal:
    def __init__(self, owner, signature):
        self.owner = owner
        self.signature = signature
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)
        return True

    def disconnect(self, slot=None):
        if slot is None:
            self.slots.clear()
        elif slot in self.slots:
            self.slots.remove(slot)

    def emit(self, *args):
        if self.owner is not None and self.owner._signalsBlocked:
            return
        for slot in list(self.slots):
            count = _arity(slot)
            try:
                slot(*(args if count is None else args[:count]))
            except Exception as error:  # PythonQt prints slot errors and carries on
                logging.exception("slot %r of %s raised", slot, self.signature)
                SLOT_ERRORS.append((self.signature, error))


class QObject:
    SIGNALS = ()
    PROPERTY_SIGNALS = {}  # property -> signal name emitted when it changes

    def __init__(self, parent=None):
        self._children = []
        self._parent = None
        self._props = {}
        self._dynamic = {}
        self._signalsBlocked = False
        self.name = ""
        for cls in reversed(type(self).__mro__):
            for signature in getattr(cls, "SIGNALS", ()):
                object.__setattr__(self, signature.split("(")[0], Signal(self, signature))
        if parent is not None:
            self.setParent(parent)

    # properties as attributes
    def __setattr__(self, key, value):
        setter = "set" + key[:1].upper() + key[1:]
        if not key.startswith("_") and key in self._knownProperties() and hasattr(type(self), setter):
            getattr(self, setter)(value)
        else:
            object.__setattr__(self, key, value)

    @classmethod
    def _knownProperties(cls):
        known = set()
        for klass in cls.__mro__:
            known |= set(getattr(klass, "PROPERTIES", ()))
        return known

    @property
    def objectName(self):
        return self.name

    def setObjectName(self, name):
        self.name = name

    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found

    def property(self, name):
        if name in self._dynamic:
            return self._dynamic[name]
        return getattr(self, name, None)

    def setProperty(self, name, value):
        if name in self._knownProperties():
            setattr(self, name, value)
        else:
            self._dynamic[name] = value

    def blockSignals(self, block):
        previous, self._signalsBlocked = self._signalsBlocked, bool(block)
        return previous

    def signalsBlocked(self):
        return self._signalsBlocked

    def connect(self, signature, slot):
        getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot=None):
        getattr(self, signature.split("(")[0]).disconnect(slot)

    def deleteLater(self):
        pass

    def isWidgetType(self):
        return False

    def className(self):
        return type(self).__name__


class QWidget(QObject):
    PROPERTIES = ("enabled", "visible", "toolTip", "geometry", "minimumSize")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self._layout = None

    def setEnabled(self, value):
        object.__setattr__(self, "enabled", bool(value))

    def setVisible(self, value):
        object.__setattr__(self, "visible", bool(value))

    def setToolTip(self, text):
        object.__setattr__(self, "toolTip", str(text))

    def show(self):
        self.setVisible(True)

    def hide(self):
        self.setVisible(False)

    def setLayout(self, layout):
        self._layout = layout
        layout._owner = self

    def layout(self):
        return self._layout

    def isWidgetType(self):
        return True


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self._owner = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        if self._owner is not None:
            widget.setParent(self._owner)

    def addLayout(self, layout, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QLabel(QWidget):
    PROPERTIES = ("text", "wordWrap")

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.wordWrap = False

    def setText(self, text):
        object.__setattr__(self, "text", str(text))

    def setWordWrap(self, value):
        object.__setattr__(self, "wordWrap", bool(value))


class QAbstractButton(QWidget):
    SIGNALS = ("clicked(bool)", "toggled(bool)", "stateChanged(int)")
    PROPERTIES = ("text", "checked", "checkable")

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.checkable = False
        object.__setattr__(self, "checked", False)

    def setText(self, text):
        object.__setattr__(self, "text", str(text))

    def setCheckable(self, value):
        object.__setattr__(self, "checkable", bool(value))

    def setChecked(self, value):
        value = bool(value)
        if value != self.checked:
            object.__setattr__(self, "checked", value)
            self.toggled.emit(value)
            self.stateChanged.emit(2 if value else 0)

    def isChecked(self):
        return self.checked

    def click(self):
        """A person clicking: nothing happens on a disabled button, as in Qt."""
        if not self.enabled:
            return False
        if self.checkable:
            self.setChecked(not self.checked)
        self.clicked.emit(self.checked)
        return True


class QPushButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True


class QLineEdit(QWidget):
    SIGNALS = ("textChanged(QString)", "editingFinished()")
    PROPERTIES = ("text", "placeholderText", "echoMode")
    Password = 2

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "text", "")
        self.placeholderText = ""
        self.echoMode = 0

    def setText(self, text):
        text = "" if text is None else str(text)
        if text != self.text:
            object.__setattr__(self, "text", text)
            self.textChanged.emit(text)

    def setPlaceholderText(self, text):
        object.__setattr__(self, "placeholderText", str(text))

    def setEchoMode(self, mode):
        object.__setattr__(self, "echoMode", mode)


class QSpinBox(QWidget):
    SIGNALS = ("valueChanged(int)",)
    PROPERTIES = ("value", "minimum", "maximum", "specialValueText", "singleStep")

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "minimum", 0)
        object.__setattr__(self, "maximum", 99)
        object.__setattr__(self, "value", 0)
        self.specialValueText = ""
        self.singleStep = 1

    def _bounded(self, value):
        return max(self.minimum, min(self.maximum, int(value)))

    def setValue(self, value):
        value = self._bounded(value)
        if value != self.value:
            object.__setattr__(self, "value", value)
            self.valueChanged.emit(value)

    def setMinimum(self, value):
        object.__setattr__(self, "minimum", int(value))
        object.__setattr__(self, "maximum", max(self.maximum, int(value)))
        self.setValue(self.value)

    def setMaximum(self, value):
        object.__setattr__(self, "maximum", int(value))
        object.__setattr__(self, "minimum", min(self.minimum, int(value)))
        self.setValue(self.value)

    def setRange(self, low, high):
        object.__setattr__(self, "minimum", int(low))
        object.__setattr__(self, "maximum", max(int(low), int(high)))
        self.setValue(self.value)

    def setSpecialValueText(self, text):
        object.__setattr__(self, "specialValueText", str(text))

    def setSingleStep(self, value):
        object.__setattr__(self, "singleStep", value)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)")
    PROPERTIES = ("currentIndex",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        object.__setattr__(self, "currentIndex", -1)

    @property
    def count(self):
        return len(self._items)

    @property
    def currentText(self):
        return self._items[self.currentIndex][0] if self.currentIndex >= 0 else ""

    @property
    def currentData(self):
        return self._items[self.currentIndex][1] if self.currentIndex >= 0 else None

    def _select(self, index):
        if index != self.currentIndex:
            object.__setattr__(self, "currentIndex", index)
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    def addItem(self, text, data=None):
        self._items.append((str(text), data))
        if self.currentIndex < 0:
            self._select(0)

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items = []
        self._select(-1)

    def setCurrentIndex(self, index):
        self._select(int(index) if 0 <= int(index) < len(self._items) else -1)

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self._items) if d == data), -1)

    def itemText(self, index):
        return self._items[index][0]


class QProgressBar(QWidget):
    PROPERTIES = ("value", "textVisible")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.value = 0
        self.textVisible = True
        self.format = "%p%"

    def setValue(self, value):
        object.__setattr__(self, "value", int(value))

    def setTextVisible(self, value):
        object.__setattr__(self, "textVisible", bool(value))

    def setFormat(self, text):
        self.format = text


class QFont:
    def __init__(self):
        self._bold = False

    def setBold(self, bold):
        self._bold = bool(bold)

    def bold(self):
        return self._bold


class Qt:
    UserRole = 0x0100
    DisplayRole = 0
    WaitCursor = 3
    ArrowCursor = 0
    Vertical = 2


class QTableWidgetItem:
    def __init__(self, text=""):
        self._text = str(text)
        self._data = {}
        self._toolTip = ""
        self._font = QFont()

    def text(self):
        return self._text

    def setText(self, text):
        self._text = str(text)

    def setData(self, role, value):
        self._data[role] = value

    def data(self, role):
        return self._text if role == Qt.DisplayRole else self._data.get(role)

    def setToolTip(self, text):
        self._toolTip = str(text)

    def toolTip(self):
        return self._toolTip

    def font(self):
        font = QFont()
        font.setBold(self._font.bold())
        return font

    def setFont(self, font):
        self._font = font


class QHeaderView(QWidget):
    SIGNALS = ("sectionClicked(int)",)


class QTableWidget(QWidget):
    SIGNALS = ("cellDoubleClicked(int,int)", "cellClicked(int,int)")
    PROPERTIES = ("editTriggers", "selectionBehavior", "selectionMode", "sortingEnabled", "alternatingRowColors")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows, self._columns, self._items, self._labels = 0, 0, {}, []
        self._horizontal, self._vertical = QHeaderView(), QHeaderView()
        self._selectedRow = None  # the .ui's SingleSelection of whole rows (SelectRows)
        self.columnWidthResets = 0  # resizeColumnsToContents calls: each one undoes the user's widths

    def setColumnCount(self, count):
        self._columns = int(count)

    def columnCount(self):
        return self._columns

    def setRowCount(self, count):
        self._rows = int(count)
        self._items = {k: v for k, v in self._items.items() if k[0] < self._rows}
        if self._selectedRow is not None and self._selectedRow >= self._rows:
            self._selectedRow = None

    def rowCount(self):
        return self._rows

    def setHorizontalHeaderLabels(self, labels):
        self._labels = list(labels)

    def horizontalHeader(self):
        return self._horizontal

    def verticalHeader(self):
        return self._vertical

    def setItem(self, row, column, item):
        if not (0 <= row < self._rows and 0 <= column < self._columns):
            raise IndexError(f"cell ({row}, {column}) outside a {self._rows}x{self._columns} table")
        self._items[(row, column)] = item

    def item(self, row, column):
        return self._items.get((row, column))

    def resizeColumnsToContents(self):
        self.columnWidthResets += 1

    def selectRow(self, row):
        self._selectedRow = int(row) if 0 <= int(row) < self._rows else None

    def clearSelection(self):
        self._selectedRow = None

    def selectedItems(self):
        """As Qt: the selected row's items; a row replaced by setItem keeps its selection (by index)."""
        if self._selectedRow is None:
            return []
        cells = ((self._selectedRow, c) for c in range(self._columns))
        return [self._items[cell] for cell in cells if cell in self._items]


class QTimer(QObject):
    SIGNALS = ("timeout()",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.interval = 0
        self.singleShot_ = False
        self._active = False
        TIMERS.append(self)

    def setInterval(self, msec):
        self.interval = int(msec)

    def start(self, msec=None):
        if msec is not None:
            self.interval = int(msec)
        self._active = True

    def stop(self):
        self._active = False

    def isActive(self):
        return self._active

    @staticmethod
    def singleShot(msec, callback):
        timer = QTimer()
        timer.singleShot_ = True
        timer.timeout.connect(callback)
        timer.start(msec)


def fireTimers():
    """One pass of the event loop: every active timer times out once."""
    for timer in list(TIMERS):
        if timer._active:
            if timer.singleShot_:
                timer._active = False
            timer.timeout.emit()


def runModal(dialog):
    """The nested event loop of a modal ``dialog`` (QDialog::exec): timers fire, then the test's hooks."""
    MODAL_STACK.append(dialog)
    try:
        for _ in range(NESTED_LOOP_PASSES[0]):
            fireTimers()
        for hook in list(WHILE_MODAL):
            hook(dialog)
    finally:
        MODAL_STACK.remove(dialog)


class QSettings:
    """Application settings: one store per process, like one user's settings file."""

    def value(self, key, default=None):
        return SETTINGS.get(key, default)

    def setValue(self, key, value):
        SETTINGS[key] = value

    def contains(self, key):
        return key in SETTINGS

    def remove(self, key):
        SETTINGS.pop(key, None)


class QIcon:
    def __init__(self, path=""):
        self.path = path


class QCursor:
    def __init__(self, shape):
        self._shape = shape

    def shape(self):
        return self._shape


class QApplication:
    _cursors = []

    @classmethod
    def setOverrideCursor(cls, shape):
        cls._cursors.append(QCursor(shape))

    @classmethod
    def restoreOverrideCursor(cls):
        if cls._cursors:
            cls._cursors.pop()

    @classmethod
    def overrideCursor(cls):
        return cls._cursors[-1] if cls._cursors else None

    @staticmethod
    def activeModalWidget():
        return MODAL_STACK[-1] if MODAL_STACK else None


class QMessageBox(QWidget):
    NoButton, Ok, Cancel, Yes, No, Retry, Close = 0, 0x400, 0x400000, 0x4000, 0x10000, 0x80000, 0x200000
    Information, Warning, Critical, Question = 1, 2, 3, 4

    def setStandardButtons(self, buttons):
        self.standardButtons = buttons

    def setText(self, text):
        self.text = text

    def show(self):
        VISIBLE_MESSAGE_BOXES.append(self)

    def accept(self):
        if self in VISIBLE_MESSAGE_BOXES:
            VISIBLE_MESSAGE_BOXES.remove(self)


class QInputDialog(QWidget):
    @staticmethod
    def getText(parent, title, label, echoMode=0, text=""):
        answer = TEXT_ANSWERS.pop(0) if TEXT_ANSWERS else ""
        dialog = {"title": title, "text": label, "icon": None, "answer": answer,
                  "waitCursor": QApplication.overrideCursor() is not None}
        DIALOGS.append(dialog)
        runModal(QInputDialog())
        return answer


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        import os

        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()

    def close(self):
        pass


# -- ctk ---------------------------------------------------------------------------------------


class ctkCollapsibleButton(QWidget):
    PROPERTIES = ("text", "collapsed")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.collapsed = False

    def setText(self, text):
        object.__setattr__(self, "text", str(text))

    def setCollapsed(self, value):
        object.__setattr__(self, "collapsed", bool(value))


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged(QString)",)
    PROPERTIES = ("currentPath", "filters")
    Dirs = 1

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "currentPath", "")
        self.filters = 0

    def setCurrentPath(self, path):
        path = "" if path is None else str(path)
        if path != self.currentPath:
            object.__setattr__(self, "currentPath", path)
            self.currentPathChanged.emit(path)

    def setFilters(self, value):
        object.__setattr__(self, "filters", value)


class ctkMessageBox(QMessageBox):
    """Records each dialog; exec_ returns the next scripted answer (Ok when none is queued)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.windowTitle = ""
        self.icon = None
        self.standardButtons = QMessageBox.Ok
        self.detailedText = ""

    def exec_(self):
        answer = ANSWERS.pop(0) if ANSWERS else QMessageBox.Ok
        DIALOGS.append({"title": self.windowTitle, "text": self.text, "icon": self.icon, "answer": answer,
                        "waitCursor": QApplication.overrideCursor() is not None})  # a busy cursor over a question
        runModal(self)
        return answer

    exec = exec_


# -- .ui loading --------------------------------------------------------------------------------


class QUiLoader:
    """Builds the tree from a .ui file with the classes registered in ``WIDGET_CLASSES``."""

    def load(self, qfile, parent=None):
        root = ET.parse(qfile.path).getroot()
        top = root.find("widget")
        return self._build(top, parent)

    def _build(self, element, parent):
        className = element.get("class")
        cls = WIDGET_CLASSES.get(className)
        if cls is None:
            raise RuntimeError(f"no stand-in for widget class {className}")
        widget = cls()
        widget.setObjectName(element.get("name", ""))
        if parent is not None:
            widget.setParent(parent)
        for prop in element.findall("property"):
            widget.setProperty(prop.get("name"), _propertyValue(prop))
        for child in element:
            self._buildChildren(child, widget)
        return widget

    def _buildChildren(self, element, widget):
        if element.tag == "widget":
            self._build(element, widget)
        elif element.tag in ("layout", "item"):
            if element.tag == "layout" and widget.layout() is None:
                widget.setLayout(WIDGET_CLASSES.get(element.get("class"), QLayout)())
            for child in element:
                self._buildChildren(child, widget)


def _propertyValue(prop):
    value = list(prop)[0] if len(prop) else None
    if value is None:
        return None
    if value.tag == "bool":
        return value.text == "true"
    if value.tag == "number":
        return int(value.text)
    if value.tag in ("string", "enum", "set"):
        return value.text or ""
    return None


WIDGET_CLASSES = {
    cls.__name__: cls
    for cls in (
        QWidget,
        QLabel,
        QPushButton,
        QCheckBox,
        QLineEdit,
        QSpinBox,
        QComboBox,
        QProgressBar,
        QTableWidget,
        QVBoxLayout,
        QHBoxLayout,
        QGridLayout,
        ctkCollapsibleButton,
        ctkPathLineEdit,
    )
}
