"""Query metrics (DKD, ASD, baselines) and the selection rules that turn them into a worklist.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "asd",
    "dkd",
    "embedding",
    "selection",
    "signals",
    "strategies",
]
