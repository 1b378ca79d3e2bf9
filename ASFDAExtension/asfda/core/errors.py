"""Errors that carry a one-line, user-facing cause (the CLI and the worker print them as is)."""


class AsfdaError(ValueError):
    """Bad input or state that the user can fix; the message is one line."""


class InvalidCaseId(AsfdaError):
    pass


class UnknownCase(AsfdaError):
    pass


class DuplicateCase(AsfdaError):
    """Two image files (or a file and a DICOM folder) name the same case: which one is meant is unknown."""


class CorruptImage(AsfdaError):
    pass


class BadSeries(CorruptImage):
    """A DICOM series that is not one regular volume: mixed geometry, missing slices, no pixel data, several
    series in one folder, or links out of its folder."""


class GeometryMismatch(AsfdaError):
    pass


class UnknownLabelValues(AsfdaError):
    pass


class EmptyLabel(AsfdaError):
    pass


class InvalidMask(AsfdaError):
    """An annotated-region mask (sparse label) that does not fit its label: values, emptiness, coverage."""


class WeightsMismatch(AsfdaError):
    pass


class ModelNotFound(AsfdaError):
    pass


class ConfigError(AsfdaError):
    pass


class DatastoreNotFound(AsfdaError):
    pass


class UnusableDevice(AsfdaError):
    pass


class DatastoreBusy(AsfdaError):
    """Another process (a worker or a CLI command) is writing to the datastore."""
