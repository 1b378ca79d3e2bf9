"""Whether the loaded case holds segmentation edits that were not submitted to the worker.

Kept apart from the widget so the rule "never drop a clinician's edits silently" is testable without Qt.
"""

from .label_names import segmentNamesOf


def sourceRepresentationTimes(segmentation):
    """Modification time of each segment's source representation (a closed surface built is not one)."""
    name = segmentation.GetSourceRepresentationName()
    times = []
    for i in range(segmentation.GetNumberOfSegments()):
        representation = segmentation.GetNthSegment(i).GetRepresentation(name)
        times.append(representation.GetMTime() if representation is not None else 0)
    return times


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

    def keptCopy(self):
        # Slicer is closing and a copy was written: nothing is left to lose.
        self.dirty = False

    def caseClosed(self):
        self.caseId = None
        self.dirty = False

    def mustConfirmLeaving(self, nextCaseId=None):
        """True when moving to `nextCaseId` (None: closing) would drop unsubmitted edits."""
        return self.dirty and nextCaseId != self.caseId


def editEvents(segmentationClass):
    """vtkSegmentation events that mean the clinician changed the label.

    Not ``RepresentationModified``: it also fires when a derived representation is (re)built, for
    example a closed surface for "Show 3D", which changes nothing the worker receives.
    """
    names = ("SourceRepresentationModified", "MasterRepresentationModified", "SegmentAdded", "SegmentRemoved")
    events = []
    for name in names:
        event = getattr(segmentationClass, name, None)
        if event is not None and event not in events:
            events.append(event)
    return events


class SegmentationEditWatcher:
    """Observes one case's segmentation at a time and releases it completely when the case goes.

    Kept out of the widget's VTKObservationMixin on purpose: its removeObserver keeps the observed
    object as a dictionary key, so each loaded case's segmentation would stay alive for the
    widget's life.
    """

    def __init__(self, segmentationClass, onEdited):
        self._events = editEvents(segmentationClass)
        self._onEdited = onEdited
        self._observed = None
        self._tags = []
        self._sourceTimes = []
        self._names = []

    @property
    def observed(self):
        return self._observed

    def watch(self, segmentation):
        self.release()
        self._observed = segmentation
        self._tags = [segmentation.AddObserver(event, self._changed) for event in self._events]
        # "Clear selected segments" (vtkSlicerSegmentationsModuleLogic::ClearSegment) fires only
        # RepresentationModified: count that event when a source representation itself changed.
        representationModified = getattr(type(segmentation), "RepresentationModified", None)
        if representationModified is not None:
            self._sourceTimes = sourceRepresentationTimes(segmentation)
            self._tags.append(segmentation.AddObserver(representationModified, self._representationChanged))
        # A rename changes which model label a segment writes; SegmentModified also fires for a colour or a
        # terminology tag, which write nothing different: count it when a name changed.
        segmentModified = getattr(type(segmentation), "SegmentModified", None)
        if segmentModified is not None:
            self._names = segmentNamesOf(segmentation)
            self._tags.append(segmentation.AddObserver(segmentModified, self._segmentChanged))

    def release(self):
        if self._observed is not None:
            for tag in self._tags:
                self._observed.RemoveObserver(tag)
        self._observed, self._tags = None, []

    def _changed(self, caller=None, event=None):
        if self._observed is not None:
            self._sourceTimes = sourceRepresentationTimes(self._observed)
            self._names = segmentNamesOf(self._observed)
        self._onEdited()

    def _segmentChanged(self, caller=None, event=None):
        names = segmentNamesOf(self._observed)
        if names != self._names:
            self._names = names
            self._onEdited()

    def _representationChanged(self, caller=None, event=None):
        times = sourceRepresentationTimes(self._observed)
        if times != self._sourceTimes:
            self._sourceTimes = times
            self._onEdited()

