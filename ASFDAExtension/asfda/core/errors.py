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


class GeometryMismatch(AsfdaError):
    pass


class UnknownLabelValues(AsfdaError):
    pass


class EmptyLabel(AsfdaError):
    pass


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
