"""One-line errors for one case of a DICOMweb datastore; the rest of the pool goes on."""

from asfda.core.errors import AsfdaError, BadSeries, UnknownCase

__all__ = ["BadSeries", "CacheFull", "PacsUnavailable", "SegRejected", "SeriesGone"]


class PacsUnavailable(AsfdaError):
    """The PACS is down, too slow, or refused our credentials (HTTP 503 from the worker)."""


class SeriesGone(UnknownCase):
    """The series was listed but the PACS no longer has it."""


class CacheFull(AsfdaError):
    """The local series cache cannot make room (everything else is in use)."""


class SegRejected(AsfdaError):
    """The PACS refused a SEG; the label stays local and the upload is retried."""
