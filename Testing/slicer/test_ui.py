"""The .ui file against ASFDA.py: widget names, parameter bindings and an offscreen render.

Run as a script to refresh Resources/Screenshots/ASFDA-ui.png.
"""

import ast
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UI_FILE = REPO / "ASFDAModule" / "Resources" / "UI" / "ASFDA.ui"
MODULE_FILE = REPO / "ASFDAModule" / "ASFDA.py"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "ASFDA-ui.png"

# Widget class each field type needs for Slicer's parameterNodeWrapper GUI connectors.
CONNECTOR_WIDGETS = {"str": {"QLineEdit"}, "int": {"QSpinBox", "QSlider"}, "bool": {"QCheckBox"},
                     "float": {"QDoubleSpinBox", "ctkSliderWidget"}, "pathlib.Path": {"ctkPathLineEdit"}}


def uiNamesUsedByModule():
    return set(re.findall(r"self\.ui\.([A-Za-z_][A-Za-z0-9_]*)", MODULE_FILE.read_text()))


def parameterFields():
    """``{field: annotation source}`` of the @parameterNodeWrapper class in ASFDA.py."""
    tree = ast.parse(MODULE_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {stmt.target.id: ast.unparse(stmt.annotation) for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in ASFDA.py")


def boundWidgets():
    """``[(widget name, widget class, SlicerParameterName)]`` from the .ui XML."""
    bound = []
    for widget in ET.parse(UI_FILE).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.append((widget.get("name"), widget.get("class"), prop.findtext("string")))
    return bound


def expectedWidgetClasses(annotation):
    if "Choice(" in annotation:
        return {"QComboBox"}
    base = re.sub(r"^Annotated\[([^,\]]+).*$", r"\1", annotation).strip()
    return CONNECTOR_WIDGETS.get(base, set())


@pytest.fixture(scope="module")
def app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    QtWidgets = pytest.importorskip("PySide6.QtWidgets")
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def loadUi(path=UI_FILE):
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    f = QFile(str(path))
    assert f.open(QFile.ReadOnly)
    try:
        loader = QUiLoader()
        widget = loader.load(f)
    finally:
        f.close()
    assert widget is not None, loader.errorString()
    return widget


def test_every_widget_the_module_uses_exists(app):
    from PySide6.QtCore import QObject

    widget = loadUi()
    used = uiNamesUsedByModule()
    assert {"worklistTable", "rankButton", "submitLabelButton", "adaptButton", "segmentEditorWidget"} <= used
    missing = sorted(name for name in used if widget.findChild(QObject, name) is None)
    assert missing == []


def test_every_bound_widget_maps_to_a_parameter_field(app):
    from PySide6.QtCore import QObject

    fields = parameterFields()
    bound = boundWidgets()
    assert len(bound) >= 3
    widget = loadUi()
    for name, cls, parameter in bound:
        assert parameter in fields, f"{name} binds unknown parameter {parameter!r}"
        assert cls in expectedWidgetClasses(fields[parameter]), f"{name} ({cls}) cannot show {fields[parameter]}"
        # The loader keeps dynamic properties, as Slicer's does; connectGui reads exactly this.
        assert widget.findChild(QObject, name).property("SlicerParameterName") == parameter
    assert len({p for _, _, p in bound}) == len(bound), "two widgets bound to one parameter"
    # The token and per-computer choices must never be bound: parameter nodes are saved into shareable
    # scenes; those live in the application settings (ASFDALib.machine_settings).
    assert not any("token" in p.lower() for p in fields)
    assert not {"workerUrl", "localPort", "workerPython", "device", "datastorePath", "annotator"} & set(fields)


def test_embedded_editor_hides_its_node_selectors(app):
    """Finding 5: with the selectors shown, a clinician could paint another segmentation than the case's."""
    editor = next(w for w in ET.parse(UI_FILE).iter("widget") if w.get("class") == "qMRMLSegmentEditorWidget")
    props = {p.get("name"): p.findtext("bool") for p in editor.findall("property")}
    assert props.get("segmentationNodeSelectorVisible") == "false"
    assert props.get("sourceVolumeNodeSelectorVisible") == "false"


def screenshotUi(tmpDir):
    """The .ui with Slicer-only widgets swapped for look-alikes, since the loader draws them empty."""
    tree = ET.parse(UI_FILE)
    for widget in tree.iter("widget"):
        cls = widget.get("class")
        if cls == "ctkCollapsibleButton":
            widget.set("class", "QGroupBox")
            for prop in widget.findall("property"):
                if prop.get("name") == "text":
                    prop.set("name", "title")
        elif cls == "ctkPathLineEdit":
            widget.set("class", "QLineEdit")
            for prop in widget.findall("property"):
                if prop.get("name") == "filters":
                    widget.remove(prop)
        elif cls == "qMRMLSegmentEditorWidget":
            widget.set("class", "QLabel")
            text = ET.SubElement(widget, "property", name="text")
            ET.SubElement(text, "string").text = "[Segment Editor: correct the prediction here]"
            frame = ET.SubElement(widget, "property", name="frameShape")
            ET.SubElement(frame, "enum").text = "QFrame::Box"
            height = ET.SubElement(widget, "property", name="minimumSize")
            size = ET.SubElement(height, "size")
            ET.SubElement(size, "width").text = "0"
            ET.SubElement(size, "height").text = "60"
    path = Path(tmpDir) / "ASFDA-screenshot.ui"
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    return path


def renderUi(target, tmpDir, fill=None):
    """Render the panel with illustrative values; ``fill(widget)`` sets more (scripts/render_slicer_screenshot)."""
    from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox, QTableWidget, QTableWidgetItem

    sys.path.insert(0, str(REPO / "ASFDAModule"))
    from ASFDALib.worklist import COLUMNS, Worklist

    widget = loadUi(screenshotUi(tmpDir))
    widget.findChild(QComboBox, "deviceComboBox").addItems(["auto", "cuda", "cpu"])
    widget.findChild(QSpinBox, "budgetKSpinBox").setValue(4)
    # The parameter node's defaults, which Slicer's connectGui would show.
    widget.findChild(QLineEdit, "workerUrlLineEdit").setText("http://127.0.0.1:8765")
    port = widget.findChild(QSpinBox, "localPortSpinBox")
    port.setMaximum(65535)
    port.setValue(8765)
    widget.findChild(QLineEdit, "datastorePathLineEdit").setText("/data/asfda-datastore")
    widget.findChild(QCheckBox, "usePseudoLabelsCheckBox").setChecked(True)
    # Illustrative rows, shaped like a /worklist reply, to show the columns filled in.
    worklist = Worklist()
    worklist.updateFromWorklistReply({"active_model_version": "v2", "budget_k": 2, "items": [
        {"rank": i + 1, "case_id": f"case-{c:03d}", "dkd": d, "asd": a, "score": s, "status": st,
         "model_version": "v2", "stale": False, "selected": i < 2, "leased_by": "Dr. Bea" if c == 23 else None}
        for i, (c, d, a, s, st) in enumerate([(17, 0.91, 0.62, 0.88, "unlabeled"), (4, 0.55, 0.80, 0.71, "final"),
                                              (23, 0.48, 0.51, 0.50, "unlabeled"), (9, 0.20, 0.33, 0.27, "unlabeled")])
    ]})
    table = widget.findChild(QTableWidget, "worklistTable")
    table.setColumnCount(len(COLUMNS))
    table.setHorizontalHeaderLabels(list(COLUMNS))
    table.verticalHeader().setVisible(False)
    table.setRowCount(len(worklist.rows))
    for r, row in enumerate(worklist.rows):
        for c, text in enumerate(row.cells()):
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    if fill is not None:
        fill(widget)
    widget.resize(520, widget.sizeHint().height() + 40)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(target))
    return widget.size()


def test_ui_renders_offscreen(app, tmp_path):
    from PySide6.QtGui import QImage

    size = renderUi(tmp_path / "ui.png", tmp_path)
    image = QImage(str(tmp_path / "ui.png"))
    assert image.width() == size.width() and image.height() > 400
    colors = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 5  # drawn widgets, not a blank canvas


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    qapp = QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        print(renderUi(SCREENSHOT, tmp), SCREENSHOT)
