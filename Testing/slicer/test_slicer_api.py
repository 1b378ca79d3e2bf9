"""Every Slicer API name the module calls exists in the Slicer versions it supports (5.8, 5.10, 5.12).

The lists below were read from Slicer's own sources (tags named with each list); the module's calls are
found by reading its code, so a new call to a name Slicer 5.8 lacks fails here before it fails in a
clinician's Slicer.
"""

import ast
from pathlib import Path

import pytest
from slicer_api_lists import (
    PARAMETER_NODE_WRAPPER_API,
    SEGMENT_EDITOR_API,
    SLICER_PACKAGING_BY_TAG,
    SLICER_UTIL_BY_TAG,
    SLICER_UTIL_PRIVATE_USED,
    SLICER_UTIL_V5_8_0,
)

MODULE_DIR = Path(__file__).resolve().parents[2] / "ASFDAModule"
SOURCES = [MODULE_DIR / "ASFDA.py", *sorted((MODULE_DIR / "ASFDALib").glob("*.py"))]


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
    assert sorted(used - SLICER_UTIL_V5_8_0 - SLICER_UTIL_PRIVATE_USED) == []


@pytest.mark.parametrize("tag", sorted(SLICER_UTIL_BY_TAG))
def test_every_slicer_util_name_exists_in_each_release(tag):
    assert sorted(utilNamesUsed() - SLICER_UTIL_BY_TAG[tag] - SLICER_UTIL_PRIVATE_USED) == []


def topLevelDefinitions(path):
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def publicDefinitions(path):
    return {name for name in topLevelDefinitions(path) if not name.startswith("_")}


def wrapperAttributes(path):
    """Names ``@parameterNodeWrapper`` sets on a class: the checkedSetAttr(classtype, "name", ...) calls."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "checkedSetAttr" and len(node.args) > 1:
            if isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names - {"_is_parameter_node_wrapper"}


@pytest.mark.parametrize("tag", sorted(SLICER_UTIL_BY_TAG))
def test_the_lists_match_the_fetched_release_files(tag):
    """The lists above were read by hand; the release files (scripts/fetch_slicer_python.py) confirm them."""
    pytest.importorskip("vtk")
    from harness import slicer_release

    folder = slicer_release.releaseFolder(tag)
    if folder is None:
        pytest.skip(slicer_release.skipReason(tag))
    assert publicDefinitions(folder / "util.py") == SLICER_UTIL_BY_TAG[tag]
    assert SLICER_UTIL_PRIVATE_USED <= topLevelDefinitions(folder / "util.py")
    packaging = folder / "packaging.py"
    assert (publicDefinitions(packaging) if packaging.is_file() else frozenset()) == SLICER_PACKAGING_BY_TAG[tag]
    assert wrapperAttributes(folder / "parameterNodeWrapper" / "wrapper.py") == PARAMETER_NODE_WRAPPER_API


def wrapperMethodsCalled():
    """Methods the module calls on its parameter-node wrapper (``self._parameterNode``, ``wrapper``...)."""
    prefixes = ("self._parameterNode.", "inputParameterNode.", "wrapper.")
    used = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                chain = next(attributeChains(ast.Module(body=[ast.Expr(node.func)], type_ignores=[])), "")
                for prefix in prefixes:
                    if chain.startswith(prefix) and chain.count(".") == prefix.count("."):
                        used.add(chain[len(prefix):])
    return used


def test_every_wrapper_method_the_module_calls_exists_at_each_release():
    used = wrapperMethodsCalled()
    assert {"connectParametersToGui", "disconnectGui"} <= used
    assert sorted(used - PARAMETER_NODE_WRAPPER_API) == []


def test_every_slicer_util_name_exists_in_the_installed_slicer_core():
    util = pytest.importorskip("slicer.util")
    assert sorted(name for name in utilNamesUsed() if not hasattr(util, name)) == []


def test_every_segment_editor_call_exists():
    used = editorMethodsUsed()
    assert {"setSegmentationNode", "setSourceVolumeNode", "setSegmentationNodeSelectorVisible"} <= used
    assert sorted(used - SEGMENT_EDITOR_API) == []


def test_the_editor_stand_in_invents_no_method():
    """The harness's editor may only offer what Slicer's header declares, or it would hide a missing method."""
    pytest.importorskip("vtk")
    from harness.slicer_standins import qMRMLSegmentEditorWidget

    offered = {name for name in vars(qMRMLSegmentEditorWidget) if not name.startswith("_")} - {"PROPERTIES"}
    assert (
        sorted(offered - SEGMENT_EDITOR_API - {"segmentationNodeSelectorVisible", "sourceVolumeNodeSelectorVisible"})
        == []
    )
