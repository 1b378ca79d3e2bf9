"""A clinician's effort on one label: the record a client sends with a submit, checked before anything is stored.

The record travels with the label revision (`LabelSubmission.extra["effort"]`), so the label record and the
case audit entry of that revision carry it; the worklist shows its minutes and `asfda report` sums them per
adaptation round.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from asfda.core.errors import AsfdaError

EFFORT = "effort"  # the key in a label's extra and in its audit detail
MAX_EFFECTS = 50
MAX_EFFECT_CHARS = 64
MAX_ACTIVE_S = 7 * 24 * 3600.0  # a week of editing on one case is a broken clock, not effort
MAX_VOXELS = 10**12
MAX_SLICES = 100_000
MAX_RECORD_CHARS = 16_384


class InvalidEffort(AsfdaError):
    """The effort record of a submit is malformed (HTTP 422); nothing is stored."""


class EffortRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active_seconds: float = Field(ge=0, le=MAX_ACTIVE_S, description="editing time, idle gaps excluded")
    idle_gap_threshold_s: float = Field(gt=0, le=3600, description="gaps longer than this were not counted")
    # None: not measured (the client could not read the prediction it opened with).
    voxels_changed: Optional[int] = Field(ge=0, le=MAX_VOXELS, description="voxels that differ from the opened label")
    slices_changed: Optional[int] = Field(ge=0, le=MAX_SLICES, description="slices along the thickest axis changed")
    effects: List[str] = Field(default_factory=list, max_length=MAX_EFFECTS, description="editor effects used")
    opened_at: Optional[str] = Field(None, max_length=40, description="ISO 8601: when the case was shown")
    submitted_at: Optional[str] = Field(None, max_length=40, description="ISO 8601: when Submit was pressed")
    client: Optional[str] = Field(None, max_length=200, description="what measured it, e.g. slicer/asfda-module")

    @field_validator("effects")
    @classmethod
    def _names(cls, names: List[str]) -> List[str]:
        for name in names:
            if not name or len(name) > MAX_EFFECT_CHARS:
                raise ValueError(f"an effect name must be 1-{MAX_EFFECT_CHARS} characters")
        return names

    @field_validator("opened_at", "submitted_at")
    @classmethod
    def _stamp(cls, stamp: Optional[str]) -> Optional[str]:
        if stamp is not None:
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # ValueError: not ISO 8601
        return stamp


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "record"
    return f"{where}: {error.get('msg', 'invalid')}"


def parse_effort(value: Any) -> Dict[str, Any]:
    """The checked record (a plain dict) from JSON text or a mapping; InvalidEffort naming the first problem."""
    if isinstance(value, (str, bytes)):
        if len(value) > MAX_RECORD_CHARS:
            raise InvalidEffort(f"effort record: longer than {MAX_RECORD_CHARS} characters")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidEffort(f"effort record: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidEffort("effort record: expected a JSON object")
    try:
        return EffortRecord.model_validate(value).model_dump()
    except ValidationError as exc:
        raise InvalidEffort(f"effort record: {_first_error(exc)}") from None


def effort_minutes(extra: Optional[Dict[str, Any]]) -> Optional[float]:
    """Active minutes of the effort a label's extra carries; None when it has none."""
    record = (extra or {}).get(EFFORT)
    if not isinstance(record, dict) or not isinstance(record.get("active_seconds"), (int, float)):
        return None
    return round(float(record["active_seconds"]) / 60.0, 2)


def efforts_by_revision(audit: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """revision id -> the effort record its submit carried, from a case's audit entries (`LeaseBook.audit`)."""
    found: Dict[str, Dict[str, Any]] = {}
    for event in audit:
        detail = event.get("detail") or {}
        if event.get("action") == "label submitted" and isinstance(detail.get(EFFORT), dict) and detail.get("revision"):
            found[detail["revision"]] = detail[EFFORT]
    return found
