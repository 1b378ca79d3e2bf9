"""Sparse annotation in the module: which requested slices are done, where the next one is, the mask to send.

A sparse rank asks for a few slices of a case (``requested_slices``: an IJK axis of the image and indices
along it, docs/worker.md "Sparse annotation"). The case opens with the model's prediction painted on every
slice, so a requested slice holding foreground is not yet the clinician's work: a requested slice is done
when the clinician changed it from what the case opened with, or accepted it as shown (Next slice leaves
the slice it showed accepted: a correct prediction needs no stroke). The label sent keeps the done slices
only and the mask marks them whole, background included, because the worker refuses foreground outside
the mask and annotated background teaches the model as much as the organ does.

Arrays here are in Slicer's numpy order (k, j, i): IJK axis ``a`` is numpy axis ``2 - a``.
"""

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from .case_reading import VolumeArray, writeRawNrrd
from .label_export import LabelSnapshot, PendingLabel, composeLabel

# The three slice views by name, as Slicer's default layout calls them.
SLICE_VIEWS = ("Red", "Yellow", "Green")


def numpyAxis(axis: int) -> int:
    return 2 - axis


@dataclass(frozen=True)
class SliceRequest:
    axis: int  # the image's IJK axis the slices are taken across
    indices: Tuple[int, ...]  # ascending, distinct

    @classmethod
    def fromReply(cls, requested: Optional[dict]) -> Optional["SliceRequest"]:
        """A worklist row's ``requested_slices``; None for a whole-volume pick. ValueError when malformed."""
        if not requested:
            return None
        axis, indices = requested.get("axis"), requested.get("indices")
        if axis not in (0, 1, 2) or not isinstance(indices, (list, tuple)) or not indices:
            raise ValueError(f"The worker's requested slices are malformed: {requested!r}")
        if not all(isinstance(i, int) and i >= 0 for i in indices):
            raise ValueError(f"The worker's requested slice indices are not slice numbers: {indices!r}")
        return cls(int(axis), tuple(sorted(set(indices))))

    def checkFits(self, shape: Sequence[int]) -> None:
        """ValueError (one line) when an index lies outside the volume of numpy ``shape`` (k, j, i)."""
        count = shape[numpyAxis(self.axis)]
        outside = [i for i in self.indices if not 0 <= i < count]
        if outside:
            raise ValueError(f"Requested slice {outside[0]} lies outside the volume's {count} slices along "
                             f"axis {self.axis}: rank again")


def onVolumeGrid(request: SliceRequest, sourceIjkToRas, volumeIjkToRas) -> Tuple[SliceRequest, Dict[int, int]]:
    """The request on the loaded volume's grid, and each of its indices' number on the worker's grid.

    The worker counts slices on the image as it serves it (``sourceIjkToRas``); Slicer may load that image
    with an axis flipped (it keeps grids right-handed), so the same slice can have another axis and number
    in the scene (``volumeIjkToRas``). The two grids must differ by axis flips and swaps only.
    """
    source, volume = np.asarray(sourceIjkToRas, dtype=float), np.asarray(volumeIjkToRas, dtype=float)
    toVolume = np.linalg.inv(volume) @ source  # worker IJK -> volume IJK
    column = toVolume[:3, request.axis]
    axis = int(np.argmax(np.abs(column)))
    if abs(abs(column[axis]) - 1.0) > 1e-3 or np.abs(np.delete(column, axis)).max() > 1e-3:
        raise ValueError("The loaded volume's grid is not the worker's image grid: requested slices cannot be "
                         "placed; open the case again")
    names = {}
    for index in request.indices:
        point = np.zeros(4)
        point[request.axis], point[3] = index, 1.0
        names[int(round(float(toVolume[axis] @ point)))] = index
    return SliceRequest(axis, tuple(sorted(names))), names


def snapshotOfLabel(voxels: np.ndarray, ijkToRas) -> LabelSnapshot:
    """A label already on the volume's grid with model values (Slicer's export), in the snapshot's form."""
    values = [int(v) for v in np.unique(voxels) if v]
    extent = (0, voxels.shape[2] - 1, 0, voxels.shape[1] - 1, 0, voxels.shape[0] - 1)
    return LabelSnapshot(tuple(voxels.shape), np.asarray(ijkToRas, dtype=float), [(voxels, extent)],
                         [(0, v, v) for v in values])


Planes = Dict[int, np.ndarray]  # requested slice index -> that slice of the label


def labelPlanes(snapshot: LabelSnapshot, request: SliceRequest) -> Planes:
    """The requested slices of the label ``snapshot`` composes, composed alone.

    Composing a whole CT label takes a few tenths of a second; these few slices take milliseconds, so the
    done marks can follow the clinician's strokes on the GUI thread.
    """
    axis, n = request.axis, numpyAxis(request.axis)
    shape = list(snapshot.shape)
    shape[n] = 1
    planes = {}
    for index in request.indices:
        layers = []
        for voxels, extent in snapshot.layers:
            low, high = extent[2 * axis], extent[2 * axis + 1]
            if not voxels.size or not low <= index <= high:
                layers.append((np.zeros((0, 0, 0), np.uint8), extent))
                continue
            cropped = list(extent)
            cropped[2 * axis] = cropped[2 * axis + 1] = 0
            layers.append((np.take(voxels, [index - low], axis=n), tuple(cropped)))
        plane = LabelSnapshot(tuple(shape), snapshot.ijkToRas, layers, snapshot.segments)
        planes[index] = np.take(composeLabel(plane), 0, axis=n)
    return planes


def editedSlices(current: Planes, opened: Planes, request: SliceRequest) -> List[int]:
    """Requested slices whose voxels differ from what the case opened with."""
    return [i for i in request.indices if not np.array_equal(current[i], opened[i])]


def doneSlices(current: Planes, opened: Planes, request: SliceRequest,
               accepted: Iterable[int] = ()) -> List[int]:
    """Requested slices edited or accepted, ascending."""
    done = set(editedSlices(current, opened, request)) | (set(accepted) & set(request.indices))
    return sorted(done)


def nextRequestedSlice(request: SliceRequest, after: Optional[int]) -> int:
    """The first requested slice after ``after`` (None: before the first), wrapping round to the first."""
    if after is None:
        return request.indices[0]
    return next((i for i in request.indices if i > after), request.indices[0])


def annotatedMask(shape: Sequence[int], request: SliceRequest, done: Iterable[int]) -> np.ndarray:
    """uint8 (k, j, i): 1 on each done slice, whole, background included; 0 elsewhere."""
    mask = np.zeros(tuple(shape), np.uint8)
    view = np.moveaxis(mask, numpyAxis(request.axis), 0)  # a view: writes land in ``mask``
    for index in done:
        view[index] = 1
    return mask


def sliceCenterRas(ijkToRas, shape: Sequence[int], axis: int, index: int) -> Tuple[float, float, float]:
    """RAS of the centre of slice ``index`` across IJK ``axis`` of a volume of numpy ``shape`` (k, j, i)."""
    k, j, i = shape
    ijk = [(i - 1) / 2.0, (j - 1) / 2.0, (k - 1) / 2.0, 1.0]
    ijk[axis] = float(index)
    ras = np.asarray(ijkToRas, dtype=float) @ np.array(ijk)
    return float(ras[0]), float(ras[1]), float(ras[2])


def viewForAxis(ijkToRas, axis: int, normals: Dict[str, Sequence[float]]) -> Optional[str]:
    """The view whose slice normal (RAS) is most nearly the IJK axis' direction: it shows those slices whole."""
    direction = np.asarray(ijkToRas, dtype=float)[:3, axis]
    best, bestScore = None, 0.0
    for name, normal in normals.items():
        n = np.asarray(normal, dtype=float)
        length = np.linalg.norm(n) * np.linalg.norm(direction)
        score = abs(float(n @ direction)) / length if length else 0.0
        if score > bestScore + 1e-9:
            best, bestScore = name, score
    return best


def progressText(request: SliceRequest, done: Sequence[int], names: Optional[Dict[int, int]] = None,
                 sourceAxis: Optional[int] = None) -> str:
    """"requested slices: 2 of 4 done (axis 2: 3 done, 7, 12 done, 15)", numbered as the worker's worklist
    numbers them (``names``: volume index -> worker index, ``sourceAxis``: the worker's axis)."""
    names = names or {}
    doneSet = set(done)
    shown = sorted((names.get(i, i), i in doneSet) for i in request.indices)
    marks = ", ".join(f"{number} done" if isDone else str(number) for number, isDone in shown)
    axis = request.axis if sourceAxis is None else sourceAxis
    return (f"requested slices: {len(doneSet & set(request.indices))} of {len(request.indices)} done "
            f"(axis {axis}: {marks})")


def requestTooltip(requested: Optional[dict]) -> str:
    """A worklist row's requested slices in words ("" for a whole-volume pick or a malformed request)."""
    try:
        request = SliceRequest.fromReply(requested)
    except ValueError:
        return ""
    if request is None:
        return ""
    return f"Requested slices along axis {request.axis}: {', '.join(map(str, request.indices))}"


@dataclass
class SparseCase:
    """The open case's slice request and what the clinician did to it (GUI thread)."""

    request: SliceRequest
    shape: Tuple[int, int, int]  # the volume's (k, j, i)
    opened: Planes  # the requested slices as the case opened
    names: Dict[int, int] = field(default_factory=dict)  # volume index -> the worker's number for it
    sourceAxis: Optional[int] = None  # the worker's axis, when the volume's grid differs
    accepted: Set[int] = field(default_factory=set)
    shown: Optional[int] = None  # the requested slice Next slice last jumped to
    done: List[int] = field(default_factory=list)

    def update(self, current: Planes) -> List[int]:
        self.done = doneSlices(current, self.opened, self.request, self.accepted)
        return self.done

    def advance(self) -> int:
        """Accept the slice shown and return the next requested one (now shown)."""
        if self.shown is not None:
            self.accepted.add(self.shown)
        self.shown = nextRequestedSlice(self.request, self.shown)
        return self.shown

    def text(self) -> str:
        return progressText(self.request, self.done, self.names, self.sourceAxis)

    def number(self, index: int) -> int:
        """The worker's number of volume slice ``index``."""
        return self.names.get(index, index)


@dataclass
class PendingSparseLabel(PendingLabel):
    """A sparse label to upload: the done slices of the label and their mask, written beside it by ``finish``."""

    mask: Optional[np.ndarray] = None  # uint8 (k, j, i)
    maskPath: str = ""

    def finish(self) -> str:
        if self.snapshot is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            label = composeLabel(self.snapshot)
            label[self.mask == 0] = 0  # the worker refuses foreground outside the annotated region
            writeRawNrrd(VolumeArray(label, self.snapshot.ijkToRas), self.path, compress=True)
            writeRawNrrd(VolumeArray(self.mask, self.snapshot.ijkToRas), self.maskPath, compress=True)
            self.snapshot = None
        return self.path
