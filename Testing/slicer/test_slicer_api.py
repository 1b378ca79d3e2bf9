"""Every Slicer API name the module calls exists in the Slicer versions it supports (5.8 and later).

The lists below were read from Slicer's own sources (tags named with each list); the module's calls are
found by reading its code, so a new call to a name Slicer 5.8 lacks fails here before it fails in a
clinician's Slicer.
"""

import ast
from pathlib import Path

import pytest
from harness.slicer_standins import SEGMENT_EDITOR_API, qMRMLSegmentEditorWidget

MODULE_DIR = Path(__file__).resolve().parents[2] / "ASFDAModule"
SOURCES = [MODULE_DIR / "ASFDA.py", *sorted((MODULE_DIR / "ASFDALib").glob("*.py"))]

# Top-level functions and classes of Base/Python/slicer/util.py at Slicer tag v5.8.0 (the oldest supported).
SLICER_UTIL_V5_8_0 = frozenset(
    {
        "MRMLNodeNotFoundException",
        "MessageDialog",
        "NodeModify",
        "RenderBlocker",
        "VTKObservationMixin",
        "WaitCursor",
        "addParameterEditWidgetConnections",
        "addVolumeFromArray",
        "addVolumeFromITKImage",
        "array",
        "arrayFromGridTransform",
        "arrayFromGridTransformModified",
        "arrayFromMarkupsControlPointData",
        "arrayFromMarkupsControlPointDataModified",
        "arrayFromMarkupsControlPoints",
        "arrayFromMarkupsCurveData",
        "arrayFromMarkupsCurvePoints",
        "arrayFromModelCellData",
        "arrayFromModelCellDataModified",
        "arrayFromModelPointData",
        "arrayFromModelPointDataModified",
        "arrayFromModelPoints",
        "arrayFromModelPointsModified",
        "arrayFromModelPolyIds",
        "arrayFromSegment",
        "arrayFromSegmentBinaryLabelmap",
        "arrayFromSegmentInternalBinaryLabelmap",
        "arrayFromTableColumn",
        "arrayFromTableColumnModified",
        "arrayFromTransformMatrix",
        "arrayFromVTKMatrix",
        "arrayFromVolume",
        "arrayFromVolumeModified",
        "chdir",
        "childWidgetVariables",
        "clickAndDrag",
        "computeChecksum",
        "confirmOkCancelDisplay",
        "confirmRetryCloseDisplay",
        "confirmYesNoDisplay",
        "createProgressDialog",
        "dataframeFromMarkups",
        "dataframeFromTable",
        "delayDisplay",
        "displayPythonShell",
        "downloadAndExtractArchive",
        "downloadFile",
        "errorDisplay",
        "exit",
        "exportNode",
        "extractAlgoAndDigest",
        "extractArchive",
        "findChild",
        "findChildren",
        "forceRenderAllViews",
        "getFilesInDirectory",
        "getFirstNodeByClassByName",
        "getFirstNodeByName",
        "getModule",
        "getModuleGui",
        "getModuleLogic",
        "getModuleWidget",
        "getNewModuleGui",
        "getNewModuleWidget",
        "getNode",
        "getNodes",
        "getNodesByClass",
        "getSubjectHierarchyItemChildren",
        "importClassesFromDirectory",
        "importModuleObjects",
        "importQtClassesFromDirectory",
        "importVTKClassesFromDirectory",
        "infoDisplay",
        "itkImageFromVolume",
        "itkImageFromVolumeModified",
        "launchConsoleProcess",
        "loadAnnotationFiducial",
        "loadAnnotationROI",
        "loadAnnotationRuler",
        "loadColorTable",
        "loadFiberBundle",
        "loadLabelVolume",
        "loadMarkups",
        "loadMarkupsClosedCurve",
        "loadMarkupsCurve",
        "loadMarkupsFiducialList",
        "loadModel",
        "loadNodeFromFile",
        "loadNodesFromFile",
        "loadScalarOverlay",
        "loadScene",
        "loadSegmentation",
        "loadSequence",
        "loadShaderProperty",
        "loadTable",
        "loadText",
        "loadTransform",
        "loadUI",
        "loadVolume",
        "logProcessOutput",
        "longPath",
        "lookupTopLevelWidget",
        "mainWindow",
        "messageBox",
        "moduleNames",
        "modulePath",
        "moduleSelector",
        "openAddColorTableDialog",
        "openAddDataDialog",
        "openAddFiberBundleDialog",
        "openAddFiducialDialog",
        "openAddMarkupsDialog",
        "openAddModelDialog",
        "openAddScalarOverlayDialog",
        "openAddSegmentationDialog",
        "openAddShaderPropertyDialog",
        "openAddTransformDialog",
        "openAddVolumeDialog",
        "openSaveDataDialog",
        "pip_install",
        "pip_uninstall",
        "plot",
        "pythonShell",
        "quit",
        "reloadScriptedModule",
        "removeParameterEditWidgetConnections",
        "resetSliceViews",
        "resetThreeDViews",
        "restart",
        "saveNode",
        "saveScene",
        "selectModule",
        "selectedModule",
        "setApplicationLogoVisible",
        "setDataProbeVisible",
        "setErrorLogVisible",
        "setMenuBarsVisible",
        "setModuleHelpSectionVisible",
        "setModulePanelTitleVisible",
        "setPythonConsoleVisible",
        "setSliceViewerLayers",
        "setStatusBarVisible",
        "setToolbarsVisible",
        "setViewControllersVisible",
        "settingsValue",
        "showStatusMessage",
        "sourceDir",
        "startQtDesigner",
        "startupEnvironment",
        "tempDirectory",
        "toBool",
        "toLatin1String",
        "toVTKString",
        "tryWithErrorDisplay",
        "updateMarkupsControlPointsFromArray",
        "updateNodeFromParameterEditWidgets",
        "updateParameterEditWidgetsFromNode",
        "updateSegmentBinaryLabelmapFromArray",
        "updateTableFromArray",
        "updateTransformMatrixFromArray",
        "updateVTKMatrixFromArray",
        "updateVolumeFromArray",
        "updateVolumeFromITKImage",
        "vtkMatrixFromArray",
        "warningDisplay",
    }
)


def attributeChains(tree):
    """Dotted names such as ``slicer.util.errorDisplay`` or ``editor.setSourceVolumeNode``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                yield ".".join([value.id, *reversed(parts)])


def utilNamesUsed():
    used = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        used |= {chain.split(".")[2] for chain in attributeChains(tree) if chain.startswith("slicer.util.")}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
                used |= {alias.name for alias in node.names}
    return used


def editorMethodsUsed():
    """Methods called on the embedded editor, directly or through a local alias ``editor``."""
    used = set()
    tree = ast.parse((MODULE_DIR / "ASFDA.py").read_text())
    for chain in attributeChains(tree):
        for prefix in ("self.ui.segmentEditorWidget.", "editor."):
            if chain.startswith(prefix):
                used.add(chain[len(prefix) :].split(".")[0])
    return used


def test_every_slicer_util_name_exists_in_slicer_5_8():
    used = utilNamesUsed()
    assert {"tryWithErrorDisplay", "errorDisplay", "loadUI", "VTKObservationMixin"} <= used
    assert sorted(used - SLICER_UTIL_V5_8_0) == []


def test_every_slicer_util_name_exists_in_the_installed_slicer_core():
    util = pytest.importorskip("slicer.util")
    assert sorted(name for name in utilNamesUsed() if not hasattr(util, name)) == []


def test_every_segment_editor_call_exists():
    used = editorMethodsUsed()
    assert {"setSegmentationNode", "setSourceVolumeNode", "setSegmentationNodeSelectorVisible"} <= used
    assert sorted(used - SEGMENT_EDITOR_API) == []


def test_the_editor_stand_in_invents_no_method():
    """The harness's editor may only offer what Slicer's header declares, or it would hide a missing method."""
    offered = {name for name in vars(qMRMLSegmentEditorWidget) if not name.startswith("_")} - {"PROPERTIES"}
    assert (
        sorted(offered - SEGMENT_EDITOR_API - {"segmentationNodeSelectorVisible", "sourceVolumeNodeSelectorVisible"})
        == []
    )
