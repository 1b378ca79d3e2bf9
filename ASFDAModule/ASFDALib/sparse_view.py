"""The widget's sparse-annotation half: the requested-slices label, Next slice, and the masked submit.

A mixin of ``ASFDAWidget`` (which provides ``ui``, ``session``, the logic's WorkerSession, and
``_parameterNode``), kept apart so ASFDA.py stays a thin module file; the rules themselves are in
sparse_slices.py. Done marks are recomputed from the requested slices of the segmentation (read in place,
composed alone) at most once a second while the clinician paints, and only when a segment's source
representation changed.
"""

import os
import time

import vtk

from . import label_export, segmentation_io
from .edits import sourceRepresentationTimes
from .sparse_slices import (
    SLICE_VIEWS,
    PendingSparseLabel,
    SliceRequest,
    SparseCase,
    annotatedMask,
    labelPlanes,
    onVolumeGrid,
    sliceCenterRas,
    snapshotOfLabel,
    viewForAxis,
)

REFRESH_INTERVAL_S = 1.0


def _tr(text):
    try:
        from slicer.i18n import tr
    except ImportError:  # Slicer < 5.4
        return text
    return tr(text)


def _matrix(vtkMatrix):
    return [[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)]


class SparseSlicesMixin:
    sparse = None  # SparseCase of the open case, None for a whole-volume case
    _sparseTimes = None
    _sparseRefreshedAt = 0.0
    _sparseExported = False  # the marks come from Slicer's (slow) export: refreshed on Next slice and Submit

    def setupSparseSlices(self):
        self.ui.nextSliceButton.clicked.connect(self.onNextSlice)
        self.showSparseSlices(None)

    def showSparseSlices(self, text):
        """``text`` in the requested-slices label, both widgets hidden for a whole-volume case (None)."""
        for widget in (self.ui.nextSliceButton, self.ui.sparseSlicesLabel):
            widget.visible = text is not None
        self.ui.sparseSlicesLabel.text = text or ""

    def closeSparseCase(self):
        self.sparse = self._sparseTimes = None
        self.showSparseSlices(None)

    def currentSnapshot(self, copy=False):
        """The open case's label as a snapshot: Slicer's voxels read in place, or, for a segmentation the fast
        path does not handle (a transform, a layer off the volume's grid as a flipped volume's can be),
        Slicer's own export (seconds on a large CT: then the marks follow only Next slice and Submit)."""
        import slicer

        p = self._parameterNode
        try:
            snapshot = label_export.takeSnapshot(p.currentSegmentation, p.currentVolume, self.session.labels,
                                                 copy=copy)
            self._sparseExported = False
            return snapshot
        except label_export.SnapshotUnavailable:
            pass
        self._sparseExported = True
        labelmap = segmentation_io.exportSegmentationToLabelmap(slicer.mrmlScene, p.currentSegmentation,
                                                                p.currentVolume, self.session.labels, allowEmpty=True)
        try:
            voxels = slicer.util.arrayFromVolume(labelmap).copy()
            matrix = vtk.vtkMatrix4x4()
            labelmap.GetIJKToRASMatrix(matrix)
        finally:
            segmentation_io.removeNodeWithDisplayNodes(slicer.mrmlScene, labelmap)
        return snapshotOfLabel(voxels, _matrix(matrix))

    def currentPlanes(self, request):
        """The volume's shape (k, j, i) and the requested slices of the open case's label."""
        snapshot = self.currentSnapshot()
        return snapshot.shape, labelPlanes(snapshot, request)

    def openSparseCase(self, files):
        """After a case loaded: track its requested slices, if the worklist row has any.

        The worker numbers them on the image it served (``files["prepared"].imageIjkToRas``); they are placed
        on the loaded volume's grid, which Slicer may have flipped. Without a prepared case (Slicer read the
        downloaded file itself) the grids are taken to agree."""
        row = self.session.worklist.row(files["caseId"])
        request = SliceRequest.fromReply(row.requestedSlices if row is not None else None)
        self.sparse = self._sparseTimes = None
        if request is None:
            self.showSparseSlices(None)
            return
        sourceAxis, names = request.axis, {}
        try:
            request.checkFits(self.volumeShape())  # the worker's numbers, on the worker's shape up to swaps
            source = getattr(files.get("prepared"), "imageIjkToRas", None)
            if source is not None:
                request, names = onVolumeGrid(request, source, self.volumeIjkToRas())
            shape, opened = self.currentPlanes(request)
            request.checkFits(shape)
        except ValueError:
            self.showSparseSlices(None)  # not the previous case's marks; the error display says why
            raise
        self.sparse = SparseCase(request, shape, opened, names, sourceAxis)
        self.refreshSparseSlices(force=True)

    def _segmentTimes(self):
        return sourceRepresentationTimes(self._parameterNode.currentSegmentation.GetSegmentation())

    def refreshSparseSlices(self, force=False):
        """Recompute the done marks when the segmentation changed (throttled unless ``force``)."""
        if self.sparse is None or self._parameterNode is None or self._parameterNode.currentSegmentation is None:
            return
        now = time.monotonic()
        if not force and (self._sparseExported or now - self._sparseRefreshedAt < REFRESH_INTERVAL_S):
            return
        times = self._segmentTimes()
        self._sparseRefreshedAt = now
        if force or times != self._sparseTimes:
            try:
                self.sparse.update(self.currentPlanes(self.sparse.request)[1])
            except ValueError as error:
                if force:  # Next slice and Submit say it in their error display
                    raise
                # From the timer tick: an error raised there would come back every tick. Submit says it too.
                self._sparseTimes = times
                self.showSparseSlices(_tr("{progress} (not updated: {error})").format(
                    progress=self.sparse.text(), error=error))
                return
            self._sparseTimes = times
        hint = _tr(" (updated on Next slice and Submit)") if self._sparseExported else ""
        self.showSparseSlices(self.sparse.text() + hint)

    def onNextSlice(self):
        import slicer

        with slicer.util.tryWithErrorDisplay(_tr("Failed to show the next requested slice."), waitCursor=True):
            if self.sparse is None:
                return
            index = self.sparse.advance()
            self.refreshSparseSlices(force=True)
            view = self.jumpToRequestedSlice(index)
            number = self.sparse.number(index)
            where = (_tr("slice {index} shown in the {view} view").format(index=number, view=view) if view else
                     _tr("no slice view to show slice {index}").format(index=number))
            self.showSparseSlices(f"{self.sparse.text()}; {where}")

    def volumeShape(self):
        i, j, k = self._parameterNode.currentVolume.GetImageData().GetDimensions()
        return k, j, i

    def volumeIjkToRas(self):
        matrix = vtk.vtkMatrix4x4()
        self._parameterNode.currentVolume.GetIJKToRASMatrix(matrix)
        return _matrix(matrix)

    def jumpToRequestedSlice(self, index):
        """Move the slice view that shows the request's slices whole onto slice ``index``; its name, or None."""
        import slicer

        ijkToRas = self.volumeIjkToRas()
        i, j, k = self._parameterNode.currentVolume.GetImageData().GetDimensions()
        sliceNodes = {}
        scene = slicer.mrmlScene
        for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            node = scene.GetNthNodeByClass(n, "vtkMRMLSliceNode")
            if node.GetLayoutName() in SLICE_VIEWS:
                sliceNodes[node.GetLayoutName()] = node
        normals = {name: [node.GetSliceToRAS().GetElement(r, 2) for r in range(3)]
                   for name, node in sliceNodes.items()}
        view = viewForAxis(ijkToRas, self.sparse.request.axis, normals)
        if view is None:
            return None
        sliceNodes[view].JumpSliceByOffsetting(*sliceCenterRas(ijkToRas, (k, j, i), self.sparse.request.axis,
                                                                index))
        return view

    def sparseLabelToSubmit(self, label, caseId):
        """The label Submit sends: the done slices with their mask for a sparse case; None when cancelled.

        No done slice: the clinician may have corrected the whole volume, so it goes whole, after asking.
        """
        import slicer

        if self.sparse is None:
            return label
        self.refreshSparseSlices(force=True)
        if not self.sparse.done:
            if slicer.util.confirmOkCancelDisplay(_tr(
                    "None of the {count} requested slices of {case} is done (edited, or accepted with Next "
                    "slice). Submit the whole segmentation as a fully annotated label?").format(
                    count=len(self.sparse.request.indices), case=caseId)):
                return label
            return None
        snapshot = label.snapshot
        if snapshot is None:  # Slicer's own export wrote the file: cut its voxels instead, written beside it
            snapshot = self.currentSnapshot(copy=True)
        folder = os.path.dirname(label.path)
        mask = annotatedMask(self.sparse.shape, self.sparse.request, self.sparse.done)
        return PendingSparseLabel(os.path.join(folder, f"{caseId}-label.nrrd"), snapshot, mask,
                                  os.path.join(folder, f"{caseId}-mask.nrrd"))
