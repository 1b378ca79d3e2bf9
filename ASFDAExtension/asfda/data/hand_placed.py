"""Clinician labels copied into labels/final/ by hand: taken in through the one submit path at check time.

Before a rank or an adapt (and when the worker starts) every file in labels/final/ that no submission wrote
(`label_files.unchecked_final_labels`) is submitted like an upload (`label_submit.submit_label`, source
"hand-placed"): the same checks on the image's grid and the model's values, a live lease of another annotator
refuses it, it becomes the case's next revision (the one it replaced stays in the history), the audit records
it and a SEG is queued for a PACS. A CASE.mask.nii.gz beside it is submitted with it as its mask. The first
bad file stops the check with one line naming it and is left as it was, so nothing trains on a label the
upload would have refused.
"""

from __future__ import annotations

from typing import List, Optional

from asfda.core.case_ids import validate_case_id
from asfda.core.errors import AsfdaError, UnknownCase
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_files import CANONICAL_SUFFIX, LabelFileError, unchecked_final_labels
from asfda.data.label_masks import mask_path
from asfda.data.label_revisions import HAND_PLACED, LabelRevisions
from asfda.data.label_submit import LabelSubmission, submit_label
from asfda.data.leases import LeaseBook
from asfda.io.volumes import strip_volume_suffix, volume_suffix
from asfda.models.config import ModelConfig

__all__ = ["check_final_labels"]


def check_final_labels(store: Datastore, config: ModelConfig, model_version: Optional[str] = None) -> List[str]:
    """Submit every unchecked file in labels/final/ through `submit_label` (as CASE.nii.gz).

    Args:
        store: the datastore; config: the active model's config (its label values);
        model_version: the active version, recorded with each revision as the model it was checked against.
    Returns:
        the case ids taken in.
    Raises:
        LabelFileError: one line naming the first bad file; that file and everything else stay untouched.
    """
    # A replace a crash interrupted, before any check; never the temp-file sweep of recover(): this runs in job
    # children and the CLI while the worker accepts submits, whose temp files it would delete (a 500).
    LabelRevisions(store.root, store.state.path).finish_interrupted()
    found = unchecked_final_labels(store)
    if not found:
        return []
    leases = LeaseBook(store.state.path, root=store.root)
    taken = []
    folder = store.label_dir(LabelTag.FINAL)
    where = f"labels/{LabelTag.FINAL.value}"
    for path in found:
        shown = f"{where}/{path.name}"
        suffix = volume_suffix(path)
        if path.is_dir() or not suffix:
            raise LabelFileError(
                f"{shown}: not a label file (expected CASE.nii.gz, .nii or .nrrd; add labels with `asfda label submit`)"
            )
        case_id = strip_volume_suffix(path)
        if suffix != CANONICAL_SUFFIX and (folder / f"{case_id}{CANONICAL_SUFFIX}").exists():
            raise LabelFileError(f"{shown}: case {case_id!r} also has {case_id}{CANONICAL_SUFFIX}; keep one of them")
        try:
            validate_case_id(case_id)
            store.image_path(case_id)
            mask = mask_path(store, case_id)
            submission = LabelSubmission(
                case_id,
                path,
                annotator=None,
                source=HAND_PLACED,
                overwrite=True,  # whoever copied it meant to replace the current label; the audit names which
                extra={"found_on_disk": path.name},
                mask=mask if mask.is_file() else None,
            )
            submit_label(store, submission, config, model_version, leases)
        except UnknownCase:
            raise LabelFileError(f"{shown}: no image for case {case_id!r} in images/") from None
        except AsfdaError as exc:
            cause = str(exc).removeprefix(f"{path.name}: ")
            raise LabelFileError(f"{shown}: {cause}") from None
        if suffix != CANONICAL_SUFFIX:
            path.unlink()  # its checked copy now lives at labels/final/CASE.nii.gz (and in the history)
        taken.append(case_id)
    return taken
