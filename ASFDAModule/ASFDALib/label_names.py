"""The model's labels as segments show them: names by value, colors. No Slicer import, so background threads use it."""

import re

# The model's background; never becomes a segment.
BACKGROUND_VALUE = 0
DEFAULT_COLORS = [
    (0.90, 0.30, 0.25), (0.25, 0.65, 0.90), (0.35, 0.80, 0.35), (0.95, 0.80, 0.25),
    (0.70, 0.45, 0.85), (0.95, 0.55, 0.20), (0.40, 0.85, 0.80), (0.85, 0.45, 0.65),
]


def foregroundLabels(labels):
    """``{name: value}`` from /info without the background, sorted by value."""
    items = sorted(((str(n), int(v)) for n, v in (labels or {}).items()), key=lambda item: item[1])
    return [(name, value) for name, value in items if value != BACKGROUND_VALUE]


def labelColor(name, value, labelColors):
    color = (labelColors or {}).get(name)
    if color is not None and len(color) >= 3:
        return tuple(float(c) for c in color[:3])
    return DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS)]


def segmentNamesOf(segmentation):
    """The names of a vtkSegmentation's segments, in segment order."""
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def _nameWords(name):
    # A terminology pick names a segment "Liver" or "Left kidney" where the model says "liver" or "kidney_left".
    return frozenset(word for word in re.split(r"[\s_\-]+", str(name).casefold()) if word)


def modelValuesBySegmentName(segmentNames, labels):
    """``{segment name: model value}`` for Submit; a name matches a label exactly, else by its words in any case.

    Raises ValueError naming the segments that match no label (or several), or when two differently spelt
    segments would write the same model value (they would overwrite each other: merge them first).
    """
    valueByName = dict(foregroundLabels(labels))
    byWords = {}
    for labelName, value in valueByName.items():
        byWords.setdefault(_nameWords(labelName), []).append(value)
    resolved, unknown = {}, []
    for name in segmentNames:
        if name in valueByName:
            resolved[name] = valueByName[name]
            continue
        candidates = byWords.get(_nameWords(name), [])
        if len(candidates) == 1:
            resolved[name] = candidates[0]
        else:
            unknown.append(name)
    if len(unknown) == 1:
        raise ValueError(f"Segment {unknown[0]!r} is not a model label; rename it to one of {sorted(valueByName)} "
                         "or delete it")
    if unknown:
        raise ValueError(f"Segments {unknown} are not model labels; rename them to one of {sorted(valueByName)} "
                         "or delete them")
    spellings = {}
    for name, value in resolved.items():
        spellings.setdefault(value, []).append(name)
    doubled = sorted(names for names in spellings.values() if len(names) > 1)
    if doubled:
        raise ValueError(f"Segments {doubled[0]} are the same model label; merge them into one segment first")
    return resolved
