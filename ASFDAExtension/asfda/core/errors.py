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
