"""Synthetic subjects from real anatomy: smooth deformations and realistic domain shifts.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "anatomy",
    "deform",
    "shifts",
]
