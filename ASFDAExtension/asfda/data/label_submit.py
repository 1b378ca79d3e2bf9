"""Submitting a clinician label: the one path every face uses (worker upload, `asfda label submit`).

In order: the file is checked against the image and the model and written, fsynced, beside the case's
history; then one BEGIN IMMEDIATE transaction on asfda.db checks the lease, checks that the label was
opened from the current revision, moves the file to its history name and records the revision, the
label row and the audit entry; after the commit the current file is replaced (`LabelRevisions.apply`,
finished at the next start if the process dies first) and a DICOM SEG is queued for the PACS.

A sparse label comes with a mask of the voxels that were annotated (`LabelSubmission.mask`): checked with the
label before anything is stored, kept beside the current label (labels/final/CASE.mask.nii.gz) and beside its
revision in the history; a label submitted without one removes an older mask (it is fully annotated).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from asfda.core.errors import EmptyLabel
from asfda.core.names import LabelTag
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore
from asfda.data.dicomweb.writeback import queue_seg
from asfda.data.effort import EFFORT
from asfda.data.label_files import read_checked_label
from asfda.data.label_masks import (
    MASK_SUFFIX,
    checked_mask,
    mask_summary,
    remove_mask,
    save_mask,
    slice_coverage,
    validate_mask,
)
from asfda.data.label_revisions import (
    HAND_PLACED,
    SUFFIX,
    LabelRevisions,
    Revision,
    RevisionConflict,
    author_of,
    place_history_file,
)
from asfda.data.leases import LeaseBook
from asfda.data.state import LabelRecord
from asfda.io.volumes import save_label_volume
from asfda.models.config import ModelConfig

NO_LABEL = ""  # base revision of a case that had no final label when it was opened


@dataclass(frozen=True)
class LabelSubmission:
    case_id: str
    file: Optional[Path]  # None for submit_label_array
    annotator: Optional[str]
    source: str  # upload | cli | slicer | simulated | hand-placed
    # The revision the label was opened from: an id, NO_LABEL (opened unlabelled) or None (not named: accepted
    # only while the case has no label or its current revision is the submitter's own).
    base_revision: Optional[str] = None
    overwrite: bool = False  # the explicit escape: replace whatever is current (recorded in the audit)
    require_foreground: bool = True
    extra: Dict[str, Any] = field(default_factory=dict)  # recorded with the label and in the audit
    # A sparse label's annotated-region mask (uint8 0/1 on the image's grid); None: every voxel annotated.
    mask: Optional[Path] = None
    # The clinician's explicit verdict "this case shows no structure": an all-background label, recorded as such
    # (audit, revision); the case leaves the pool like any labelled one.
    no_structure: bool = False


@dataclass(frozen=True)
class SubmitResult:
    record: LabelRecord
    revision: Revision
    replaced: Optional[Revision]  # the revision that was current before this one
    seg_queued: bool

    def reply(self) -> Dict[str, Any]:
        return {
            "case_id": self.record.case_id,
            "tag": self.record.tag,
            "author": self.record.author,
            "created": self.record.created,
            "model_version": self.record.model_version,
            "label_values": [v for v in self.record.extra.get("label_values", []) if v != 0],
            "prediction": self.record.extra.get("prediction"),
            "revision": self.revision.revision,
            "replaced_revision": self.replaced.revision if self.replaced else None,
            "source": self.revision.source,
            "seg_queued": self.seg_queued,
            "annotated_mask": self.record.extra.get("annotated_mask"),
            "requested_slices": self.record.extra.get("requested_slices"),
            "effort": self.record.extra.get(EFFORT),
        }


def _who(annotator: Optional[str]) -> str:
    return annotator or "an unnamed submitter"


def check_base(case_id: str, current: Optional[Revision], submission: LabelSubmission) -> None:
    """RevisionConflict naming who made the current revision and who submits, unless the base matches."""
    if submission.overwrite:
        return
    base = submission.base_revision
    if base is None:
        if current is None or (submission.annotator is not None and current.author == submission.annotator):
            return
        raise RevisionConflict(
            f"case {case_id!r} already has label revision {current.revision} by {author_of(current)} "
            f"({current.created}); {_who(submission.annotator)} did not say which revision the label was opened "
            "from: open the case again, or overwrite explicitly"
        )
    if current is not None and base == current.revision:
        return
    if current is None and base == NO_LABEL:
        return
    opened = f"revision {base}" if base else "no label"
    now = f"revision {current.revision} by {author_of(current)} ({current.created})" if current else "no label"
    raise RevisionConflict(
        f"case {case_id!r} changed since {_who(submission.annotator)} opened it from {opened}: it now has {now}; "
        f"nothing was stored: open the case again to see it, or overwrite explicitly"
    )


def submit_label(
    store: Datastore,
    submission: LabelSubmission,
    config: ModelConfig,
    model_version: Optional[str],
    leases: Optional[LeaseBook] = None,
) -> SubmitResult:
    """Check, store and record one clinician label; durable (row, history file, current file) on return.

    Raises a one-line AsfdaError before anything is stored: a bad file (CorruptImage, GeometryMismatch,
    UnknownLabelValues, EmptyLabel), LeaseConflict, or RevisionConflict.
    """
    sparse = submission.mask is not None
    # With a mask a background-only label is information (a requested slice the organ does not reach).
    labels, affine, values = read_checked_label(
        store,
        submission.case_id,
        submission.file,
        config,
        submission.require_foreground and not sparse and not submission.no_structure,
    )
    submission = _with_verdict(submission, values)
    voxels = None
    if sparse:
        voxels, recorded = checked_mask(store, submission.case_id, Path(submission.mask), labels)
        submission = replace(submission, extra={**submission.extra, **recorded})
    return _submit(store, submission, labels, affine, values, model_version, leases, voxels)


def _with_verdict(submission: LabelSubmission, values: List[int]) -> LabelSubmission:
    """A "no structure" verdict must be what the file says; it is recorded with the revision and the audit."""
    if not submission.no_structure:
        return submission
    drawn = [v for v in values if v != 0]
    if drawn:
        raise EmptyLabel(
            f"case {submission.case_id!r} was submitted as showing no structure, but its label holds values {drawn}"
        )
    return replace(submission, require_foreground=False, extra={**submission.extra, "no_structure": True})


def submit_label_array(
    store: Datastore,
    submission: LabelSubmission,
    labels: np.ndarray,
    affine: np.ndarray,
    config: ModelConfig,
    model_version: Optional[str],
    leases: Optional[LeaseBook] = None,
    mask: Optional[np.ndarray] = None,
) -> SubmitResult:
    """`submit_label` for a label already in memory (the simulated annotator of the demo and benchmark);
    `submission.file` is not read. `mask`: a sparse label's annotated voxels (0/1 on the image's grid), checked
    like an uploaded mask; None: fully annotated."""
    sparse = mask is not None
    labels, affine, values = store.checked_label(
        submission.case_id, labels, affine, config.label_values, submission.require_foreground and not sparse
    )
    voxels = None
    if sparse:
        voxels = np.asarray(mask).astype(np.uint8)
        validate_mask(voxels, labels, f"{submission.case_id}{MASK_SUFFIX}")
        coverage = slice_coverage(voxels, store.state.requested_slices(submission.case_id))
        recorded = {"annotated_mask": mask_summary(voxels, submission.case_id), "requested_slices": coverage}
        submission = replace(submission, extra={**submission.extra, **recorded})
    return _submit(store, submission, labels, affine, values, model_version, leases, voxels)


def _submit(store, submission, labels, affine, values, model_version, leases, mask=None) -> SubmitResult:
    leases = leases if leases is not None else LeaseBook(store.state.path, root=store.root)
    revisions = leases.revisions
    case_id = submission.case_id
    # Written and fsynced before the transaction, so the write lock is held only for a rename.
    staged = revisions.history_dir(case_id) / f".{uuid.uuid4().hex}.tmp{SUFFIX}"
    save_label_volume(staged, labels, affine)
    try:
        with connect(store.state.path) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = _record_in(db, store, leases, submission, staged, values, model_version)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    finally:
        staged.unlink(missing_ok=True)
    revisions.apply(case_id)
    if mask is None:
        remove_mask(store, case_id)
    else:
        save_mask(store, case_id, mask)
        history = revisions.history_dir(case_id) / f"{result[1].revision}{MASK_SUFFIX}"
        save_label_volume(history, mask.astype(np.uint8), affine)
    seg_queued = queue_seg(store, case_id, submission.annotator, model_version)
    revisions.mark_seg(case_id, result[1].revision, "queued" if seg_queued else "none")
    return SubmitResult(result[0], result[1], result[2], seg_queued)


def reconcile_seg_outbox(store: Datastore) -> List[str]:
    """At start: queue the SEG of every latest revision whose submit died between its commit and the
    queueing (the outbox lives in dicomweb.db, another database); returns the cases queued."""
    revisions = LabelRevisions(store.root, store.state.path)
    queued = []
    for revision in revisions.seg_undecided():
        sent = queue_seg(store, revision.case_id, revision.author, revision.model_version)
        revisions.mark_seg(revision.case_id, revision.revision, "queued" if sent else "none")
        if sent:
            queued.append(revision.case_id)
    return queued


def _record_in(db, store, leases, submission, staged, values, model_version):
    revisions, case_id, annotator = leases.revisions, submission.case_id, submission.annotator
    leases.check_submit_in(db, case_id, annotator, leases.clock())
    # A hand-placed file lies where the current label does: it is this submit, not a revision to adopt first.
    hand_placed = submission.source == HAND_PLACED
    current = revisions.recorded_in(db, case_id) if hand_placed else revisions.current_in(db, case_id)
    check_base(case_id, current, submission)
    revision_id = revisions.next_id_in(db, case_id)
    target = revisions.history_dir(case_id) / f"{revision_id}{SUFFIX}"
    place_history_file(staged, target)
    revision = revisions.insert_in(db, case_id, revision_id, target, annotator, model_version, submission.source)
    record = LabelRecord(
        case_id,
        LabelTag.FINAL.value,
        annotator,
        revision.created,
        model_version,
        {"label_values": values, "revision": revision_id, "source": submission.source, **submission.extra},
    )
    store.state.record_label(record, db=db)
    detail: Dict[str, Any] = {"label_values": [v for v in values if v != 0], **submission.extra}
    detail.update(revision=revision_id, source=submission.source, replaced_revision=current and current.revision)
    if submission.overwrite and current is not None:
        detail["overwrote"] = {"revision": current.revision, "author": author_of(current)}
    leases.submitted_in(db, case_id, annotator, model_version, **detail)
    return record, revision, current
