"""A worker session's files: download a case, export a label to send, keep a copy of unsubmitted edits.

``CaseFiles`` belongs to the ``WorkerSession`` (worker_session.py), which gives it the session's download
folder and the worker's /info reply (the model's label values and colours). Each download and each label to
upload has its own subfolder of ``workDir`` (ASFDALib/session_folder.py), removed once nothing needs it: a CT
is a few hundred MB.
"""

import os
import time

from . import case_reading, label_export, segmentation_io
from .session_folder import newSubfolder, removeSubfolder


class CaseFiles:
    def __init__(self, workDir, infoOf):
        self.workDir = workDir
        self._infoOf = infoOf  # () -> the worker's /info reply, None before connecting

    @property
    def labels(self):
        """The model's label values, name -> value ({} before connecting)."""
        return (self._infoOf() or {}).get("labels") or {}

    @property
    def labelColors(self):
        return (self._infoOf() or {}).get("label_colors")

    @staticmethod
    def unsubmittedFolder():
        """Backups of unsubmitted edits: outlive the session, next to the user's scenes."""
        import slicer

        base = getattr(slicer.app, "defaultScenePath", "") or os.path.expanduser("~")
        return os.path.join(base, "ASFDA unsubmitted edits")

    def fetchCase(self, client, caseId, revision=None):
        """Download the image and what the clinician corrects (background thread): the case's current label
        when it has one (``revision``, as the lease reported it), else a fresh prediction of the active model.
        Correcting the current label is what a submit naming that revision means. Both are decoded here, off
        the GUI thread (``prepared`` is None without SimpleITK or nibabel: the GUI thread reads them)."""
        folder = newSubfolder(self.workDir, caseId)
        imagePath = os.path.join(folder, "image.nii.gz")
        predictionPath = os.path.join(folder, "prediction.nii.gz")
        try:
            client.downloadImage(caseId, imagePath)
            if revision:
                client.downloadRevision(caseId, revision, predictionPath)
                source = {"revision": revision}
            else:
                source = {"modelVersion": client.infer(caseId, predictionPath)}
            prepared = case_reading.prepareCase(imagePath, predictionPath, self.labels, self.labelColors)
        except Exception:
            removeSubfolder(self.workDir, folder)  # a half-downloaded CT helps no one
            raise
        return {"caseId": caseId, "image": imagePath, "prediction": predictionPath, **source,
                "folder": folder, "prepared": prepared}

    def caseFilesRead(self, files):
        """The case is in the scene (its nodes hold the data and have no storage node): drop the downloads."""
        removeSubfolder(self.workDir, files.get("folder"))

    def backupUnsubmittedLabel(self, segmentationNode, volumeNode, caseId, effort=None, writer=None):
        """Save unsubmitted edits (even an empty segmentation) with a time stamp; returns the path.
        ``effort``: the case's EffortRecorder, whose record so far is kept beside the copy.

        Through the fast copy when it applies: about 0.5 s for a 512x512x300 case against 2 s for Slicer's
        export. Written on the GUI thread (the question that follows names the file, and at exit nothing waits
        for a thread), unless ``writer`` (a ``backup_writer.BackupWriter``, at scene close) writes it in a
        thread once the segments are copied.
        """
        folder = os.path.join(self.unsubmittedFolder(), caseId + "-" + time.strftime("%Y%m%d-%H%M%S"))
        try:
            snapshot = label_export.takeSnapshot(segmentationNode, volumeNode, self.labels)
        except label_export.SnapshotUnavailable:
            path = self._export(segmentationNode, volumeNode, caseId, folder, allowEmpty=True)
        else:
            pending = label_export.PendingLabel(os.path.join(folder, f"{caseId}-label.nrrd"), snapshot)
            path = writer.start(pending) if writer is not None else pending.finish()
        if effort is not None and effort.caseId == caseId:
            effort.writeNextTo(path)
        return path

    def exportLabel(self, segmentationNode, volumeNode, caseId, allowEmpty=False):
        """The label file to submit, on the volume's grid with the model's label values."""
        if not caseId or segmentationNode is None:
            raise ValueError("Load a case before submitting a label")
        folder = newSubfolder(self.workDir, caseId + "-label")
        try:
            return self._export(segmentationNode, volumeNode, caseId, folder, allowEmpty)
        except Exception:
            removeSubfolder(self.workDir, folder)
            raise

    def snapshotLabel(self, segmentationNode, volumeNode, caseId, allowEmpty=False):
        """The label to submit as a ``PendingLabel`` (GUI thread): a quick copy, written later by ``uploadLabel``.

        Segmentations outside the fast path's simple form are exported by Slicer here instead. Raises
        EmptyLabelError when nothing is painted unless ``allowEmpty``, ValueError for a segment named after no
        model label.
        """
        if not caseId or segmentationNode is None:
            raise ValueError("Load a case before submitting a label")
        folder = newSubfolder(self.workDir, caseId + "-label")
        try:
            try:
                snapshot = label_export.takeSnapshot(segmentationNode, volumeNode, self.labels)
            except label_export.SnapshotUnavailable:
                return label_export.PendingLabel(self._export(segmentationNode, volumeNode, caseId, folder,
                                                              allowEmpty))
            if not allowEmpty and label_export.isEmpty(snapshot):
                raise segmentation_io.EmptyLabelError("The segmentation is empty: nothing is painted")
        except Exception:
            removeSubfolder(self.workDir, folder)
            raise
        return label_export.PendingLabel(os.path.join(folder, f"{caseId}-label.nrrd"), snapshot)

    def uploadLabel(self, client, caseId, label, send=None, effort=None):
        """Write (a ``PendingLabel``) and send a label (background thread); its file goes, sent or not.
        ``send(client, caseId, path, maskPath=None, effort=None)``: how to send it (the case lease's, naming the
        opened revision); a sparse label (sparse_slices.PendingSparseLabel) writes its mask beside it and sends it
        too. ``effort``: the ``SubmittedEffort`` of this submit; its record (with the voxels and slices changed,
        compared here off the GUI thread) goes with the label."""
        path = label.path if isinstance(label, label_export.PendingLabel) else label
        maskPath = getattr(label, "maskPath", "") or None
        try:
            record = None
            if effort is not None:
                snapshot = label.snapshot if isinstance(label, label_export.PendingLabel) else None
                record = effort.finish(label_export.composeLabel(snapshot) if snapshot is not None else None)
            if isinstance(label, label_export.PendingLabel):
                label.finish()
            if send is not None:
                return send(client, caseId, path, maskPath=maskPath, effort=record)
            return client.uploadLabel(caseId, path, maskPath=maskPath, effort=record)
        finally:
            removeSubfolder(self.workDir, os.path.dirname(path))

    def _export(self, segmentationNode, volumeNode, caseId, folder, allowEmpty):
        import slicer

        os.makedirs(folder, exist_ok=True)
        return segmentation_io.exportSegmentationToFile(
            slicer.mrmlScene, segmentationNode, volumeNode, self.labels, folder, caseId, allowEmpty=allowEmpty
        )
