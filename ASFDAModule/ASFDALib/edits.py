"""Whether the loaded case holds segmentation edits that were not submitted to the worker.

Kept apart from the widget so the rule "never drop a clinician's edits silently" is testable without Qt.
"""


class EditTracker:
    def __init__(self):
        self.caseId = None
        self.dirty = False

    def caseLoaded(self, caseId):
        # The pre-filled prediction is not the clinician's work: a freshly loaded case is clean.
        self.caseId = caseId
        self.dirty = False

    def segmentationEdited(self):
        if self.caseId is not None:
            self.dirty = True

    def labelSubmitted(self, caseId):
        if caseId == self.caseId:
            self.dirty = False

    def caseClosed(self):
        self.caseId = None
        self.dirty = False

    def mustConfirmLeaving(self, nextCaseId=None):
        """True when moving to `nextCaseId` (None: closing) would drop unsubmitted edits."""
        return self.dirty and nextCaseId != self.caseId
