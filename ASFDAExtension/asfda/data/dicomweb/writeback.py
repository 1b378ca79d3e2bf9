"""Clinician labels written back to the PACS as DICOM SEG, through a durable outbox.

The local label is the truth and is stored before anything is sent. Each submitted label queues
one SEG (a newer label of the case replaces the queued one); `flush` sends what is pending and
records failures, so a PACS that is down or rejects the SEG loses nothing: the next flush (worker
timer, `POST /dicomweb/retry`, or `asfda` start) tries again.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from asfda.core.errors import AsfdaError, ModelNotFound
from asfda.data.dicomweb.errors import SegRejected
from asfda.data.dicomweb.source import DicomwebSource, pacs_error

log = logging.getLogger("asfda.data.dicomweb")
_FAILED_SOP_SEQUENCE = "FailedSOPSequence"


def send_seg(source: DicomwebSource, seg) -> None:
    try:
        reply = source.client.store_instances([seg])
    except Exception as exc:
        import requests

        if isinstance(exc, requests.HTTPError) and exc.response is not None and 400 <= exc.response.status_code < 500:
            if exc.response.status_code not in (401, 403, 408, 429):
                raise SegRejected(f"PACS rejected the SEG: HTTP {exc.response.status_code}") from None
        raise pacs_error("storing the SEG (STOW-RS)", exc) from None
    failed = reply.get(_FAILED_SOP_SEQUENCE) if hasattr(reply, "get") else None
    if failed:
        raise SegRejected("PACS rejected the SEG (listed in FailedSOPSequence)")
    # Some PACS answer a STOW they filtered out with success: only a SEG we can find again counts.
    try:
        kept = source.client.search_for_instances(
            study_instance_uid=str(seg.StudyInstanceUID), search_filters={"SOPInstanceUID": str(seg.SOPInstanceUID)}
        )
    except Exception as exc:
        raise pacs_error("checking the stored SEG (QIDO-RS)", exc) from None
    if not kept:
        raise SegRejected("PACS rejected the SEG: it accepted the upload but did not keep the instance")


def queue_seg(store, case_id: str, annotator: Optional[str], model_version: Optional[str]) -> bool:
    """Queue a stored clinician label for write-back; True when the datastore's PACS takes SEGs."""
    source = store.image_source
    if not isinstance(source, DicomwebSource) or not source.config.write_seg:
        return False
    source.index.queue_seg(case_id, annotator, model_version)
    return True


def flush(store, source: DicomwebSource, leases=None) -> List[Dict]:
    """Send every pending SEG; returns one {"case_id", "ok", "error", "seg_series_uid"} per attempt."""
    from asfda.data.datastore import LabelTag
    from asfda.data.dicomweb.seg import build_seg
    from asfda.io.volumes import load_volume

    results = []
    for item in source.index.pending_segs():
        case_id, error, uid = item["case_id"], None, None
        try:
            label = load_volume(store.label_path(case_id, LabelTag.FINAL))
            names = _label_names(store)
            seg = build_seg(
                source.source_slices(case_id),
                label.numpy(),
                label.affine.numpy(),
                names,
                item["annotator"],
                item["model_version"],
            )
            send_seg(source, seg)
            uid = str(seg.SeriesInstanceUID)
        except (AsfdaError, OSError) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("SEG for %s not written back (%s); kept locally, will retry", case_id, error)
        source.index.seg_attempt(case_id, item["queued_at"], error, uid)
        if leases is not None:
            action = "SEG written to PACS" if error is None else "SEG write-back failed"
            leases.record(case_id, item["annotator"], action, item["model_version"], error=error, seg_series_uid=uid)
        results.append({"case_id": case_id, "ok": error is None, "error": error, "seg_series_uid": uid})
    return results


def _label_names(store) -> Dict[str, int]:
    version: Optional[str] = store.models.active_version()
    if version is None:
        raise ModelNotFound("no active model: its label names are needed to write a SEG")
    from asfda.models.config import ModelConfig

    return ModelConfig.load(store.models.root / version / "config.json").labels
