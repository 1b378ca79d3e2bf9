"""Conversions between worker files and MRML nodes.

Files go through MRML storage nodes (ITK readers/writers), so the NIfTI/NRRD RAS<->LPS handling
is Slicer's own and the same in the application and in slicer-core tests. Label values are never
guessed from segment order: a color table maps each model label value to its name both ways,
so a clinician may reorder, hide or leave empty segments and the uploaded values still match
the model's.
"""

import logging
import os

import slicer
import vtk

from . import compat
from .label_names import (  # noqa: F401 (part of this module's face)
    BACKGROUND_VALUE,
    foregroundLabels,
    labelColor,
    modelValuesBySegmentName,
    segmentNamesOf,
)


class EmptyLabelError(ValueError):
    """Nothing is painted: a valid negative case, but only when the clinician says so."""


def removeNodeWithDisplayNodes(scene, node):
    """Remove a node and its display and storage nodes: the scene keeps those otherwise, one set per case."""
    if node is None or node.GetScene() is None:
        return
    dependents = []
    for getCount, getNth in (("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
                             ("GetNumberOfStorageNodes", "GetNthStorageNode")):
        if hasattr(node, getCount):
            dependents += [getattr(node, getNth)(i) for i in range(getattr(node, getCount)())]
    scene.RemoveNode(node)
    for dependent in dependents:
        if dependent is not None and dependent.GetScene() is not None:
            scene.RemoveNode(dependent)


def createLabelColorTable(scene, labels, labelColors=None, name="ASFDALabels"):
    """A user color table whose entry ``value`` is named after the model's label ``value``."""
    fg = foregroundLabels(labels)
    if not fg:
        raise ValueError("The model declares no foreground labels")
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName(name))
    table.SetTypeToUser()
    table.SetHideFromEditors(True)
    table.SetNumberOfColors(max(v for _, v in fg) + 1)
    # Unused entries must stay nameless, or export would match a segment to them.
    for value in range(table.GetNumberOfColors()):
        table.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    table.SetColor(BACKGROUND_VALUE, "background", 0.0, 0.0, 0.0, 0.0)
    for labelName, value in fg:
        r, g, b = labelColor(labelName, value, labelColors)
        table.SetColor(value, labelName, r, g, b, 1.0)
    if compat.colorNamesNeedInitialising(slicer):
        table.SetNamesInitialised(True)  # else 5.8 renames every entry "R=... G=... B=... A=..." on first read
    return table


def _readIntoNode(scene, node, path, keepStorageNode=False):
    """Read ``path`` into ``node``; with ``keepStorageNode`` the node keeps the storage node that read it.

    Kept, the storage node tells Slicer the node holds what was read (its stored time), so "Save before
    exit?" does not list it until it changes.
    """
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    kept = False
    try:
        storage.SetFileName(str(path))
        if not storage.ReadData(node):
            raise OSError(f"Could not read volume file {path}")
        if keepStorageNode:
            node.SetAndObserveStorageNodeID(storage.GetID())
            kept = True
    finally:
        if not kept:
            scene.RemoveNode(storage)
    return node


def _writeAndKeep(scene, node, storage, path):
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    storage.SetUseCompression(0)
    if not storage.WriteData(node):
        # Only the exit prompt's list depends on it: the case stays usable.
        logging.warning("ASFDA: could not write %s; Slicer will list %s as modified", path, node.GetName())
        scene.RemoveNode(storage)
        return False
    node.SetAndObserveStorageNodeID(storage.GetID())
    return True


def markCaseAsStored(scene, volumeNode, segmentationNode, folder, caseId):
    """Give the case's nodes storage nodes that hold what they show (written once, uncompressed: fast).

    A node without a storage node, or one built from an array, is "modified since read" for Slicer: every
    opened case, edited or not, was listed by "Save before exit?". After this only an edit (or "Show 3D",
    as for any segmentation in Slicer) lists it. A node that kept the storage node that read it is left.
    """
    if volumeNode.GetStorageNode() is None or volumeNode.GetModifiedSinceRead():
        _writeAndKeep(scene, volumeNode, slicer.vtkMRMLVolumeArchetypeStorageNode(),
                      os.path.join(folder, f"{caseId}.nrrd"))
    if segmentationNode.GetStorageNode() is None or segmentationNode.GetModifiedSinceRead():
        _writeAndKeep(scene, segmentationNode, slicer.vtkMRMLSegmentationStorageNode(),
                      os.path.join(folder, f"{caseId}.seg.nrrd"))


def loadSegmentationFile(scene, path, name):
    """A segmentation read from a .seg.nrrd (``case_reading.prepareCase``), keeping its storage node.

    Reading a raw file is little more than a copy; the import of a labelmap it replaces took 3 s on the GUI
    thread for a 512x512x300 case.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        removeNodeWithDisplayNodes(scene, node)
        raise OSError(f"Could not read segmentation file {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def loadScalarVolume(scene, path, name, windowLevel=None):
    """A volume node read from ``path`` (keeping its storage node).

    ``windowLevel`` (low, high), computed in the background, spares the GUI thread the automatic window's
    pass over every voxel (2 s for a 512x512x300 CT on a loaded machine).
    """
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    try:
        _readIntoNode(scene, node, path, keepStorageNode=True)
    except Exception:
        removeNodeWithDisplayNodes(scene, node)
        raise
    if windowLevel is None:
        node.CreateDefaultDisplayNodes()
        return node
    display = slicer.vtkMRMLScalarVolumeDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(float(windowLevel[0]), float(windowLevel[1]))
    scene.AddNode(display)
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def loadPredictionAsSegmentation(scene, predictionPath, labels, labelColors=None, referenceVolumeNode=None,
                                 name="Prediction"):
    """Turn a prediction labelmap file into a segmentation with one segment per model label.

    Labels absent from the prediction still get an empty segment, so the clinician can paint
    structures the model missed without having to name them (and risk a name the model lacks).
    On the GUI thread; ``case_reading.prepareCase`` does the same in the background when it can.
    """
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("ASFDAImport"))
    try:
        _readIntoNode(scene, labelmap, predictionPath)
        labelmap.CreateDefaultDisplayNodes()
    except Exception:
        removeNodeWithDisplayNodes(scene, labelmap)
        raise
    return _segmentationFromLabelmap(scene, labelmap, labels, labelColors, referenceVolumeNode, name, predictionPath)


def _segmentationFromLabelmap(scene, labelmap, labels, labelColors, referenceVolumeNode, name, source):
    """Import ``labelmap`` (then removed) into a new segmentation named after the model's labels."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    table = createLabelColorTable(scene, labels, labelColors)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    try:
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
        segmentation.CreateDefaultDisplayNodes()
        if referenceVolumeNode is not None:
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
        unknown = _valuesWithoutName(labelmap, table)
        if unknown:
            raise ValueError(f"Prediction contains label values the model does not declare: {unknown}")
        if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise RuntimeError(f"Could not import {source} into a segmentation")
        present = {segmentation.GetSegmentation().GetNthSegment(i).GetName()
                   for i in range(segmentation.GetSegmentation().GetNumberOfSegments())}
        for labelName, value in foregroundLabels(labels):
            if labelName not in present:
                segmentation.GetSegmentation().AddEmptySegment("", labelName,
                                                               labelColor(labelName, value, labelColors))
    except Exception:
        removeNodeWithDisplayNodes(scene, segmentation)
        raise
    finally:
        removeNodeWithDisplayNodes(scene, labelmap)
        scene.RemoveNode(table)
    return segmentation


def _valuesWithoutName(labelmapNode, table):
    scalars = labelmapNode.GetImageData().GetPointData().GetScalars()
    low, high = (int(round(x)) for x in scalars.GetRange())
    if low < 0 or high >= table.GetNumberOfColors():
        return sorted({v for v in (low, high) if v < 0 or v >= table.GetNumberOfColors()})
    histogram = vtk.vtkImageAccumulate()
    histogram.SetInputData(labelmapNode.GetImageData())
    histogram.SetComponentExtent(0, high, 0, 0, 0, 0)
    histogram.SetComponentOrigin(0, 0, 0)
    histogram.SetComponentSpacing(1, 1, 1)
    histogram.Update()
    counts = histogram.GetOutput().GetPointData().GetScalars()
    return [v for v in range(1, high + 1) if counts.GetTuple1(v) > 0 and table.GetColorName(v) in compat.NO_COLOR_NAMES]


def segmentNames(segmentationNode):
    return segmentNamesOf(segmentationNode.GetSegmentation())


def exportSegmentationToLabelmap(scene, segmentationNode, referenceVolumeNode, labels, name="ASFDALabel",
                                 allowEmpty=False):
    """A labelmap node on the reference volume's exact grid, valued with the model's labels.

    Raises ValueError when a segment is named after no model label (the worker would reject it),
    and EmptyLabelError when nothing is painted unless ``allowEmpty`` (a confirmed negative case).
    """
    if referenceVolumeNode is None:
        raise ValueError("No reference volume: load a case before submitting its label")
    # The export's table names each value after the segment that writes it, so "Liver" writes "liver"'s value.
    valueBySegment = modelValuesBySegmentName(segmentNames(segmentationNode), labels)
    table = createLabelColorTable(scene, {"background": BACKGROUND_VALUE, **valueBySegment} if valueBySegment
                                  else labels)
    colorTablesBefore = _nodeIds(scene, "vtkMRMLColorTableNode")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(name))
    try:
        ids = vtk.vtkStringArray()
        segmentationNode.GetSegmentation().GetSegmentIDs(ids)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmap, referenceVolumeNode,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, table)
        if not ok:
            raise RuntimeError("Could not export the segmentation to a labelmap")
        high = labelmap.GetImageData().GetPointData().GetScalars().GetRange()[1]
        if high <= BACKGROUND_VALUE and not allowEmpty:
            raise EmptyLabelError("The segmentation is empty: nothing is painted")
    except Exception:
        removeNodeWithDisplayNodes(scene, labelmap)
        raise
    finally:
        scene.RemoveNode(table)
        # The export makes a color table for the temporary labelmap; one would be left per submit.
        for nodeId in _nodeIds(scene, "vtkMRMLColorTableNode") - colorTablesBefore:
            scene.RemoveNode(scene.GetNodeByID(nodeId))
    return labelmap


def _nodeIds(scene, className):
    return {scene.GetNthNodeByClass(i, className).GetID() for i in range(scene.GetNumberOfNodesByClass(className))}


def saveLabelmap(scene, labelmapNode, path):
    """Write with a storage node; compression on, since uploads go over HTTP."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(str(path))
        storage.SetUseCompression(1)
        if not storage.WriteData(labelmapNode):
            raise OSError(f"Could not write labelmap to {path}")
    finally:
        scene.RemoveNode(storage)
    return str(path)


def exportSegmentationToFile(scene, segmentationNode, referenceVolumeNode, labels, directory, caseId,
                             allowEmpty=False):
    """Export and save to ``directory/<caseId>-label.nii.gz``; returns the file path."""
    labelmap = exportSegmentationToLabelmap(scene, segmentationNode, referenceVolumeNode, labels,
                                            allowEmpty=allowEmpty)
    try:
        return saveLabelmap(scene, labelmap, os.path.join(directory, f"{caseId}-label.nii.gz"))
    finally:
        removeNodeWithDisplayNodes(scene, labelmap)
