"""Volume files to arrays and their geometry (NIfTI, NRRD, DICOM folders) and header-checked label reading.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "dicom_series",
    "label_reading",
    "volumes",
]
