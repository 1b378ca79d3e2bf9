"""Segment names resolved to model labels for Submit (issue 20: a terminology pick was refused)."""

import pytest
from ASFDALib.label_names import modelValuesBySegmentName

LABELS = {"background": 0, "kidney_left": 1, "kidney_right": 2, "liver": 3}


def test_names_match_labels_by_words_in_any_case():
    assert modelValuesBySegmentName(["Left kidney", "kidney-right", "liver"], LABELS) == {
        "Left kidney": 1, "kidney-right": 2, "liver": 3}


def test_unknown_names_are_refused_in_one_line():
    with pytest.raises(ValueError, match="Segment 'kidney' is not a model label"):
        modelValuesBySegmentName(["kidney"], LABELS)
    with pytest.raises(ValueError, match=r"Segments \['spleen', 'Segment_1'\] are not model labels"):
        modelValuesBySegmentName(["spleen", "Segment_1"], LABELS)


def test_an_exact_name_wins_over_a_word_match():
    labels = {"background": 0, "Liver": 1, "liver": 2}
    assert modelValuesBySegmentName(["liver"], labels) == {"liver": 2}
    with pytest.raises(ValueError, match="not a model label"):
        modelValuesBySegmentName(["LIVER"], labels)  # two labels share its words: which one is not guessed
