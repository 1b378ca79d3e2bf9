"""Export the clinician's label for Submit with the slow part off the GUI thread.

``ExportSegmentsToLabelmapNode`` plus a compressed write held Slicer's GUI thread about 2 s for a
512x512x300 case. Here the GUI thread only copies what it must (each layer's voxels and extent, each
segment's layer, value in that layer and model value, in segment order: about 0.1 s), and a background
thread paints the segments in that order onto the volume's grid (a later segment over an earlier one, as
Slicer's merged export does) and writes the NIfTI. Anything unusual for this fast path (a transform, a
layer not on the volume's grid) is left to Slicer's own export (``segmentation_io``), so the uploaded
values never depend on which path ran; tests compare the two. The file is a gzip NRRD (the worker reads
NIfTI and NRRD), written by the same code that the GUI thread's reads rely on.
"""

import os
from dataclasses import dataclass, field
from typing import Any, List, Tuple

import numpy as np

from .case_reading import VolumeArray, writeRawNrrd
from .label_names import modelValuesBySegmentName, segmentNamesOf

BINARY_LABELMAP = "Binary labelmap"


class SnapshotUnavailable(Exception):
    """The segmentation is not in the simple form this path handles; use Slicer's export."""


@dataclass
class LabelSnapshot:
    shape: Tuple[int, int, int]  # the volume's (k, j, i)
    ijkToRas: Any  # 4x4, the volume's
    layers: List[Tuple[Any, Tuple[int, ...]]] = field(default_factory=list)  # (voxels k,j,i, extent)
    segments: List[Tuple[int, int, int]] = field(default_factory=list)  # (layer, value in layer, model value)


def _matrix(vtkMatrix):
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def takeSnapshot(segmentationNode, volumeNode, labels, copy=True):
    """Copy what the export needs (GUI thread). Raises SnapshotUnavailable, or ValueError for unknown names.

    ``copy=False``: the layers are views of Slicer's own voxels, for a caller done with them before the
    segmentation changes again (the sparse view reads a few slices on the GUI thread)."""
    import vtk
    from vtk.util import numpy_support

    if segmentationNode.GetParentTransformNode() is not None or volumeNode.GetParentTransformNode() is not None:
        raise SnapshotUnavailable("a transform")
    segmentation = segmentationNode.GetSegmentation()
    valueByName = modelValuesBySegmentName(segmentNamesOf(segmentation), labels)
    if segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
        raise SnapshotUnavailable("not edited as a labelmap")
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    volumeImage = volumeNode.GetImageData()
    i, j, k = volumeImage.GetDimensions()
    snapshot = LabelSnapshot((k, j, i), _matrix(ijkToRas))
    layerIndex = {}
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        name = segment.GetName()
        image = segment.GetRepresentation(BINARY_LABELMAP)
        if image is None:
            raise SnapshotUnavailable("a segment without a labelmap")
        key = image.__this__ if hasattr(image, "__this__") else id(image)
        if key not in layerIndex:
            world = vtk.vtkMatrix4x4()
            image.GetImageToWorldMatrix(world)
            if not np.allclose(_matrix(world), snapshot.ijkToRas, atol=1e-4):
                raise SnapshotUnavailable("a layer off the volume's grid")
            extent = tuple(image.GetExtent())
            scalars = image.GetPointData().GetScalars()
            if extent[1] < extent[0] or scalars is None:
                voxels = np.zeros((0, 0, 0), np.uint8)
            else:
                dims = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
                voxels = numpy_support.vtk_to_numpy(scalars).reshape(dims)
                voxels = voxels.copy() if copy else voxels
            layerIndex[key] = len(snapshot.layers)
            snapshot.layers.append((voxels, extent))
        snapshot.segments.append((layerIndex[key], int(segment.GetLabelValue()), valueByName[name]))
    return snapshot


def isEmpty(snapshot):
    return not any(
        voxels.size and np.isin(voxels, [value for index, value, _ in snapshot.segments if index == layer]).any()
        for layer, (voxels, _) in enumerate(snapshot.layers)
    )


def composeLabel(snapshot):
    """The label on the volume's grid with model values (background thread); later segments on top."""
    high = max([model for _, _, model in snapshot.segments] + [0])
    label = np.zeros(snapshot.shape, np.uint8 if high < 256 else np.uint16)
    k, j, i = snapshot.shape
    for layer, value, model in snapshot.segments:
        voxels, (i0, i1, j0, j1, k0, k1) = snapshot.layers[layer]
        if not voxels.size:
            continue
        # The part of the layer's extent inside the volume's.
        lo = (max(k0, 0), max(j0, 0), max(i0, 0))
        hi = (min(k1, k - 1), min(j1, j - 1), min(i1, i - 1))
        if any(h < low for low, h in zip(lo, hi)):
            continue
        src = voxels[lo[0] - k0: hi[0] - k0 + 1, lo[1] - j0: hi[1] - j0 + 1, lo[2] - i0: hi[2] - i0 + 1]
        target = label[lo[0]: hi[0] + 1, lo[1]: hi[1] + 1, lo[2]: hi[2] + 1]
        target[src == value] = model
    return label


def writeLabel(snapshot, path):
    """Compose and write ``path`` (a gzip NRRD the worker reads) on the volume's geometry; returns the path."""
    return writeRawNrrd(VolumeArray(composeLabel(snapshot), snapshot.ijkToRas), path, compress=True)


@dataclass
class PendingLabel:
    """A label to upload: already written (``path``), or to be written from ``snapshot`` by ``finish``."""

    path: str
    snapshot: Any = None

    def finish(self):
        if self.snapshot is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            writeLabel(self.snapshot, self.path)
            self.snapshot = None
        return self.path
