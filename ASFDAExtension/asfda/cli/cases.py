"""`asfda case add` and `asfda label submit`: the command-line way in for images and clinician labels."""

from __future__ import annotations

import sys
from pathlib import Path

from asfda.cli.common import add_command, add_datastore


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
        "The same checks as the worker's label upload: the file reads as a 3D NIfTI/NRRD volume, lies on the "
        "case image's grid, holds only the active model's label values and some foreground. The label is "
        "written atomically to labels/final/CASE.nii.gz and recorded with its author and the model version. "
        "A sparse label (some slices drawn) comes with --mask: a uint8 0/1 volume on the image's grid marking the "
        "voxels that were annotated (whole drawn slices, background included); it must hold every foreground "
        "voxel of the label, is stored as labels/final/CASE.mask.nii.gz, and training counts those voxels only.",
    )
    add_datastore(p, device=False)
    p.add_argument("case", help="case id")
    p.add_argument("file", type=Path, help="label volume (.nii.gz, .nii or .nrrd)")
    p.add_argument("--author", default=None, help="who drew the label (recorded)")
    p.add_argument("--mask", type=Path, default=None, metavar="FILE", help="a sparse label's annotated-region mask")
    p.add_argument("--allow-empty", action="store_true", help="accept a background-only label (no structure)")
    p.set_defaults(func=run_label_submit)


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


def run_label_submit(args) -> int:
    from asfda.core.errors import AsfdaError
    from asfda.data.datastore import Datastore
    from asfda.data.sparse_labels import submit_label
    from asfda.models.config import ModelConfig

    store = Datastore(args.datastore, create=False)
    store.image_path(args.case)  # unknown case: one line before reading anything
    model = store.models.active_version()
    if model is None:
        raise AsfdaError("no active model: labels are checked against its label values; `asfda model import` first")
    config = ModelConfig.load(store.models.root / model / "config.json")
    author = " ".join(args.author.split()) if args.author else None
    try:
        record = submit_label(
            store,
            args.case,
            args.file,
            config,
            mask=args.mask,
            author=author,
            model_version=model,
            require_foreground=not args.allow_empty,
        )
    except AsfdaError as exc:
        if args.file.name in str(exc) or (args.mask is not None and args.mask.name in str(exc)):
            raise
        raise type(exc)(f"{args.file.name}: {exc}") from None
    values = [v for v in record.extra.get("label_values", []) if v != 0]
    print(f"stored label for {record.case_id} (values {values}, author {record.author}, model {model})")
    sparse = record.extra.get("annotated_mask")
    if sparse:
        share = f"{sparse['annotated_fraction']:.1%}"
        print(f"sparse: {sparse['annotated_voxels']} annotated voxels ({share} of the volume)")
    coverage = record.extra.get("requested_slices")
    if coverage:
        print(
            f"requested slices done: {len(coverage['done'])} of {len(coverage['requested'])} "
            f"(axis {coverage['axis']}; missing {sorted(set(coverage['requested']) - set(coverage['done']))})"
        )
    return 0
