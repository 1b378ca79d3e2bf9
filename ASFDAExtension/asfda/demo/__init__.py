"""`asfda demo`: the whole loop on real anatomy with a simulated annotator.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "data",
    "evaluate",
    "run",
    "source_model",
]
