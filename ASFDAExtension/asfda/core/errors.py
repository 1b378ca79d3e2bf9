"""Errors that carry a one-line, user-facing cause (the CLI and the worker print them as is)."""


class AsfdaError(ValueError):
    """Bad input or state that the user can fix; the message is one line."""


class InvalidCaseId(AsfdaError):
    pass


class UnknownCase(AsfdaError):
    pass


class CorruptImage(AsfdaError):
    pass


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
