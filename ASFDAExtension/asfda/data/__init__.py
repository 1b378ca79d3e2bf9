"""The datastore folder: images, labels by tag, SQLite state, leases, label files, model import and the
DICOMweb image source.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "case_files",
    "cases",
    "datastore",
    "dicomweb",
    "hand_placed",
    "label_files",
    "label_folder",
    "leases",
    "model_import",
    "state",
]
