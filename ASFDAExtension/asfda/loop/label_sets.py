"""Which clinician labels a model version trained on, so the validation gate holds out only labels the
parent never saw (issue 18, gate honesty)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Dict, List, Optional, Set

from asfda.core.checksums import sha256_file
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_masks import mask_path

# metrics key: case id -> the label file's sha256 (first 16 hex digits; a sparse label's adds its mask's)
TRAINED_LABELS = "trained_labels"


def _identity(store: Datastore, case_id: str) -> str:
    label = sha256_file(store.label_path(case_id, LabelTag.FINAL))[:16]
    mask = mask_path(store, case_id)
    # A sparse label is its label and its mask: more slices annotated is a different label.
    return f"{label}+{sha256_file(mask)[:16]}" if mask.exists() else label


def label_identities(store: Datastore, case_ids: List[str]) -> Dict[str, str]:
    """The identity of each case's current final label: a corrected label is a different label."""
    return {c: _identity(store, c) for c in case_ids}


def _parsed(stamp: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def labels_seen_by(store: Datastore, version: str) -> Set[str]:
    """Case ids whose current final label `version` (or an ancestor it started from) trained on.

    A version that records its label set answers exactly (a label corrected since counts as new). An import
    (no parent) saw none. An adapted version from before the record: every label recorded before it was
    created, the most it can have seen.
    """
    meta = json.loads((store.models.root / version / "meta.json").read_text())
    trained = (meta.get("metrics") or {}).get(TRAINED_LABELS)
    if isinstance(trained, dict):
        current = label_identities(store, [c for c in trained if store.has_label(c, LabelTag.FINAL)])
        return {c for c, identity in current.items() if trained.get(c) == identity}
    if meta.get("parent") is None:
        return set()
    created = _parsed(meta.get("created"))
    records = store.state.labels(LabelTag.FINAL.value)
    return {r.case_id for r in records if created is None or (_parsed(r.created) or created) <= created}
