"""The model's labels as segments show them: names by value, colors. No Slicer import, so background threads use it."""

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
