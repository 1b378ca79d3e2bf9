"""Benchmarks: label efficiency of the query strategies (`asfda bench labels`), scoring cost (`bench speed`,
`cost/`), and the real anatomies they run on (`bench data`).

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "cost",
    "labels",
    "settings",
    "sources",
]
