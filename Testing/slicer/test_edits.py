from ASFDALib.edits import EditTracker


def test_fresh_prediction_is_not_an_edit():
    tracker = EditTracker()
    tracker.caseLoaded("c1")
    assert not tracker.mustConfirmLeaving("c2")


def test_edits_must_be_confirmed_before_leaving_until_submitted():
    tracker = EditTracker()
    tracker.segmentationEdited()  # nothing loaded: nothing to lose
    assert not tracker.mustConfirmLeaving("c1")
    tracker.caseLoaded("c1")
    tracker.segmentationEdited()
    assert tracker.mustConfirmLeaving("c2") and tracker.mustConfirmLeaving(None)
    assert not tracker.mustConfirmLeaving("c1")  # reloading the same case is the clinician's explicit choice
    tracker.labelSubmitted("c2")
    assert tracker.mustConfirmLeaving("c2")
    tracker.labelSubmitted("c1")
    assert not tracker.mustConfirmLeaving("c2")
    tracker.segmentationEdited()
    tracker.caseClosed()
    assert not tracker.mustConfirmLeaving("c3")

