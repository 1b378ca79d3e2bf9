"""The package's base: errors, atomic writes and folder publish, file identity and checksums, SQLite,
progress, case ids and the torch-free vocabulary (strategy names, label tags). Imports nothing of the package.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "annotation_cost",
    "atomic",
    "case_ids",
    "checksums",
    "errors",
    "file_identity",
    "names",
    "progress",
    "sqlite_db",
]
