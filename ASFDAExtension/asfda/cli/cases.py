"""`asfda case add` and `asfda label submit`: the command-line way in for images and clinician labels."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from asfda.cli.common import add_command, add_datastore, writes_datastore


def add_parser(subparsers) -> None:
    case = add_command(subparsers, "case", "cases of a datastore: add images")
    sub = case.add_subparsers(dest="case_command", metavar="ACTION", required=True)
    p = add_command(
        sub,
        "add",
        "add images (NIfTI, NRRD, DICOM series folders) as cases",
        "Each PATH is a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file, a folder of such files (one case each), "
        "a DICOM series folder, or a folder of DICOM series folders (one case each). The case id is the file "
        "or folder name without its suffix, or --id for a single image. Every image must read as a 3D volume "
        "before it is copied in (atomically); an existing case is refused unless --skip-existing.",
    )
    add_datastore(p, device=False)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    p.add_argument("--id", dest="case_id", help="case id for a single image (default: from its name)")
    p.add_argument("--skip-existing", action="store_true", help="leave cases that exist already; no error")
    p.set_defaults(func=run_case_add)

    label = add_command(subparsers, "label", "clinician labels: submit")
    sub = label.add_subparsers(dest="label_command", metavar="ACTION", required=True)
    p = add_command(
        sub,
        "submit",
        "check and store a clinician label for a case (labels/final/)",
        "The same path as the worker's label upload: the file reads as a 3D NIfTI/NRRD volume, lies on the "
        "case image's grid, holds only the active model's label values and some foreground; another "
        "annotator's live lease refuses it; it becomes the case's next revision (earlier ones stay under "
        "labels/final/history/CASE/), labels/final/CASE.nii.gz is replaced atomically, the audit records it "
        "and a DICOM SEG is queued when the datastore reads a PACS. A case that already has a label needs "
        "--base-revision (the revision the label was made from, see `asfda label revisions`) or --overwrite. "
        "A sparse label (some slices drawn) comes with --mask: a uint8 0/1 volume on the image's grid marking the "
        "voxels that were annotated (whole drawn slices, background included); it must hold every foreground "
        "voxel of the label, is stored as labels/final/CASE.mask.nii.gz (and with the revision), and training "
        "counts those voxels only. Given a FOLDER instead of CASE FILE, every CASE.nii.gz (or .nii, .nrrd) in it "
        "is submitted the same way in one call, with CASE.mask.nii.gz beside it as its mask: one line per case "
        "(its revision, or why it was refused, nothing stored for it), exit status 2 if any was refused.",
    )
    add_datastore(p, device=False)
    p.add_argument("case", metavar="CASE|FOLDER", help="case id, or a folder of CASE.nii.gz label files")
    p.add_argument("file", type=Path, nargs="?", help="label volume (.nii.gz, .nii or .nrrd) for CASE")
    p.add_argument("--annotator", "--author", dest="annotator", default=None, help="who drew the label (recorded)")
    p.add_argument(
        "--base-revision",
        default=None,
        metavar="REV",
        help="the revision the label was made from (e.g. r0002; 'none' for a case that had no label)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the current revision whichever it is")
    p.add_argument("--mask", type=Path, default=None, metavar="FILE", help="a sparse label's annotated-region mask")
    p.add_argument(
        "--no-structure",
        "--allow-empty",
        dest="no_structure",
        action="store_true",
        help="the case shows no structure: an all-background label, recorded as that verdict",
    )
    p.add_argument(
        "--effort",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON effort record (active_seconds, idle_gap_threshold_s, voxels_changed, slices_changed, effects, "
        "...) kept with the revision; `asfda report` sums its minutes per round",
    )
    p.set_defaults(func=writes_datastore("asfda label submit", run_label_submit))
    p = add_command(sub, "revisions", "list a case's label revisions (author, time, model version, source)")
    add_datastore(p, device=False)
    p.add_argument("case", help="case id")
    p.set_defaults(func=run_label_revisions)


def run_case_add(args) -> int:
    from asfda.data.case_files import add_case, expand_sources, has_case
    from asfda.data.datastore import Datastore

    sources, skipped = expand_sources(args.paths, args.case_id)
    for path in skipped:
        print(f"asfda case add: skipped {path} (not a NIfTI/NRRD file)", file=sys.stderr)
    store = Datastore(args.datastore)
    added = 0
    for source in sources:
        if args.skip_existing and has_case(store, source.case_id):
            print(f"exists  {source.case_id}")
            continue
        add_case(store, source)
        added += 1
        print(f"added   {source.case_id}  <- {source.path}", flush=True)
    print(f"{added} case(s) added, {len(store.case_ids())} in the datastore")
    return 0


def _effort_text(path: Optional[Path]) -> Optional[str]:
    from asfda.core.errors import AsfdaError

    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AsfdaError(f"{path}: cannot read the effort record ({exc})") from None


def _submission_args(args):
    from asfda.data.effort import EFFORT, parse_effort
    from asfda.data.label_submit import NO_LABEL

    annotator = " ".join(args.annotator.split()) if args.annotator else None
    effort = _effort_text(args.effort)
    extra = {EFFORT: parse_effort(effort)} if effort is not None else {}  # checked before the label is read
    base = args.base_revision
    base = NO_LABEL if base is not None and base.strip().lower() == "none" else base
    return annotator or None, base, extra


def _active_config(store):
    from asfda.core.errors import AsfdaError
    from asfda.models.config import ModelConfig

    model = store.models.active_version()
    if model is None:
        raise AsfdaError("no active model: labels are checked against its label values; `asfda model import` first")
    return model, ModelConfig.load(store.models.root / model / "config.json")


def _submit_one(store, config, model, args, case_id: str, file: Path, mask: Optional[Path]):
    """submit_label for one file; an error names the file (or the mask) it is about."""
    from asfda.core.errors import AsfdaError
    from asfda.data.label_revisions import RevisionConflict
    from asfda.data.label_submit import LabelSubmission, submit_label
    from asfda.data.leases import LeaseConflict

    annotator, base, extra = _submission_args(args)
    submission = LabelSubmission(
        case_id,
        file,
        annotator,
        "cli",
        base_revision=base,
        overwrite=args.overwrite,
        no_structure=args.no_structure,
        mask=mask,
        extra=extra,
    )
    try:
        return submit_label(store, submission, config, model).reply()
    except AsfdaError as exc:
        named = file.name in str(exc) or (mask is not None and mask.name in str(exc))
        if named or isinstance(exc, (LeaseConflict, RevisionConflict)):
            raise
        raise type(exc)(f"{file.name}: {exc}") from None


def _stored_line(reply, model: str) -> str:
    replaced = f", replaced {reply['replaced_revision']}" if reply["replaced_revision"] else ""
    seg = ", SEG queued for the PACS" if reply["seg_queued"] else ""
    return (
        f"stored label for {reply['case_id']} as revision {reply['revision']}{replaced} "
        f"(values {reply['label_values']}, author {reply['author']}, model {model}{seg})"
    )


def run_label_submit(args) -> int:
    from asfda.data.datastore import Datastore

    if args.file is None:
        return run_label_submit_folder(args)
    store = Datastore(args.datastore, create=False)
    store.image_path(args.case)  # unknown case: one line before reading anything
    model, config = _active_config(store)
    reply = _submit_one(store, config, model, args, args.case, args.file, args.mask)
    print(_stored_line(reply, model))
    sparse = reply.get("annotated_mask")
    if sparse:
        share = f"{sparse['annotated_fraction']:.1%}"
        print(f"sparse: {sparse['annotated_voxels']} annotated voxels ({share} of the volume)")
    coverage = reply.get("requested_slices")
    if coverage:
        print(
            f"requested slices done: {len(coverage['done'])} of {len(coverage['requested'])} "
            f"(axis {coverage['axis']}; missing {sorted(set(coverage['requested']) - set(coverage['done']))})"
        )
    return 0


def run_label_submit_folder(args) -> int:
    """`asfda label submit --datastore DS FOLDER`: one start-up for every label in the folder, one line each."""
    from asfda.core.errors import AsfdaError
    from asfda.data.datastore import Datastore
    from asfda.data.label_folder import labels_in_folder

    folder = Path(args.case)
    if not folder.is_dir():
        raise AsfdaError(f"{folder}: give CASE FILE, or a folder of CASE.nii.gz label files")
    if args.mask is not None or args.effort is not None:
        raise AsfdaError("--mask and --effort name one case's files: with a folder, put CASE.mask.nii.gz beside it")
    if args.base_revision is not None and args.base_revision.strip().lower() != "none":
        raise AsfdaError("--base-revision names one case's revision: with a folder only 'none' or --overwrite")
    store = Datastore(args.datastore, create=False)
    model, config = _active_config(store)
    entries, skipped = labels_in_folder(folder)
    for name in skipped:
        print(f"asfda label submit: skipped {name} (not a label volume)", file=sys.stderr)
    if not entries:
        raise AsfdaError(f"{folder}: no label files (CASE.nii.gz, .nii or .nrrd) in it")
    refused = 0
    for entry in entries:
        try:
            if entry.problem:
                raise AsfdaError(entry.problem)
            store.image_path(entry.case_id)
            print(_stored_line(_submit_one(store, config, model, args, entry.case_id, entry.file, entry.mask), model))
        except AsfdaError as exc:
            refused += 1
            reason = " ".join(str(exc).split())
            print(f"refused {entry.case_id}: {reason} (nothing stored)", flush=True)
    print(f"{len(entries) - refused} of {len(entries)} label(s) stored" + (f", {refused} refused" if refused else ""))
    return 2 if refused else 0


def run_label_revisions(args) -> int:
    from asfda.data.datastore import Datastore
    from asfda.data.label_revisions import LabelRevisions

    store = Datastore(args.datastore, create=False)
    store.image_path(args.case)
    book = LabelRevisions(store.root, store.state.path)
    found = book.revisions(args.case)
    current = book.current(args.case)
    if not found:
        print(f"case {args.case} has no label revisions")
    for r in found:
        mark = "*" if r == current else " "
        print(
            f"{mark} {r.revision}  {r.created}  {r.source:<7}  {r.author or '-'}  "
            f"model {r.model_version or '-'}  {r.path}"
        )
    return 0
