"""The logic's file half: download a case, export a label to send, keep a copy of unsubmitted edits.

A mixin of ``ASFDALogic`` (which provides ``workDir``, the session's download folder, and ``labels``, the
model's label values), kept apart so ASFDA.py stays a thin module file.
"""

import os
import time

from . import segmentation_io


class CaseFilesMixin:
    @staticmethod
    def unsubmittedFolder():
        """Backups of unsubmitted edits: outlive the session, next to the user's scenes."""
        import slicer

        base = getattr(slicer.app, "defaultScenePath", "") or os.path.expanduser("~")
        return os.path.join(base, "ASFDA unsubmitted edits")

    def fetchCase(self, client, caseId, revision=None):
        """Download the image and what the clinician corrects (background thread): the case's current label
        when it has one (``revision``, as the lease reported it), else a fresh prediction of the active model.
        Correcting the current label is what a submit naming that revision means."""
        folder = os.path.join(self.workDir, caseId)
        os.makedirs(folder, exist_ok=True)
        imagePath = os.path.join(folder, "image.nii.gz")
        predictionPath = os.path.join(folder, "prediction.nii.gz")
        client.downloadImage(caseId, imagePath)
        if revision:
            client.downloadRevision(caseId, revision, predictionPath)
            return {"caseId": caseId, "image": imagePath, "prediction": predictionPath, "revision": revision}
        version = client.infer(caseId, predictionPath)
        return {"caseId": caseId, "image": imagePath, "prediction": predictionPath, "modelVersion": version}

    def backupUnsubmittedLabel(self, segmentationNode, volumeNode, caseId):
        """Save unsubmitted edits (even an empty segmentation) with a time stamp; returns the path."""
        folder = os.path.join(self.unsubmittedFolder(), caseId + "-" + time.strftime("%Y%m%d-%H%M%S"))
        return self._export(segmentationNode, volumeNode, caseId, folder, allowEmpty=True)

    def exportLabel(self, segmentationNode, volumeNode, caseId, allowEmpty=False):
        """The label file to submit, on the volume's grid with the model's label values."""
        if not caseId or segmentationNode is None:
            raise ValueError("Load a case before submitting a label")
        return self._export(segmentationNode, volumeNode, caseId, os.path.join(self.workDir, caseId), allowEmpty)

    def _export(self, segmentationNode, volumeNode, caseId, folder, allowEmpty):
        import slicer

        os.makedirs(folder, exist_ok=True)
        return segmentation_io.exportSegmentationToFile(
            slicer.mrmlScene, segmentationNode, volumeNode, self.labels, folder, caseId, allowEmpty=allowEmpty
        )
