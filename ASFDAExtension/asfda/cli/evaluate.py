"""`asfda evaluate`: Dice and HD95 of a model version against reference labels, per case and per label."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from asfda.cli.common import add_command, add_datastore, add_json, add_threads, fmt, print_json
from asfda.core.progress import console_progress


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        "Dice and HD95 of a model version against reference labels",
        "Predict every case that has a reference label in --labels (files named CASE.nii.gz, .nii or .nrrd) "
        "with a model version and report Dice and the 95th-percentile Hausdorff distance (mm, MONAI metrics) "
        "per case and foreground label, then means per label, over all cases and over cases held out from "
        "training (no clinician label in the datastore). Predictions stay in memory; nothing in the "
        "datastore changes and the version is not activated.",
    )
    add_datastore(p)
    p.add_argument("--labels", type=Path, required=True, help="folder of reference labels")
    p.add_argument("--version", help="model version to evaluate (default: the active one)")
    p.add_argument("--csv", type=Path, help="also write one row per case and label to this CSV file")
    add_json(p, "scores and summary")
    add_threads(p)
    p.set_defaults(func=run)


def _csv_text(model_version: str, scores) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model_version", "case_id", "label", "value", "dice", "hd95_mm", "in_training"])
    for s in scores:
        hd95 = "" if s.hd95_mm is None else f"{s.hd95_mm:.4f}"
        writer.writerow([model_version, s.case_id, s.label, s.value, f"{s.dice:.6f}", hd95, int(s.in_training)])
    return buffer.getvalue()


def run(args) -> int:
    from asfda.core.atomic import atomic_write_text
    from asfda.loop import LoopSession, SessionSettings
    from asfda.loop.evaluate import reference_labels

    session = LoopSession.open(args.datastore, SessionSettings.from_args(args), progress=console_progress("evaluate"))
    references, skipped = reference_labels(args.labels, session.store.case_ids())
    for name in skipped:
        print(f"asfda evaluate: skipped {name} (no case of that name in the datastore)", file=sys.stderr)
    result = session.evaluate(references, args.version)
    result.skipped = skipped
    if args.csv:
        atomic_write_text(args.csv, _csv_text(result.model_version, result.scores))
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"model {result.model_version}: {len(references)} case(s) against {args.labels}")
    print(f"{'case':<24} {'label':<16} {'Dice':>7} {'HD95 mm':>8}  trained")
    for s in result.scores:
        print(
            f"{s.case_id:<24} {s.label:<16} {s.dice:7.4f} {fmt(s.hd95_mm, '8.2f', 8)}  {'yes' if s.in_training else ''}"
        )
    print(f"{'mean':<24} {'label':<16} {'Dice':>7} {'HD95 mm':>8}  held-out Dice (cases)")
    for m in result.summary:
        print(
            f"{'':<24} {m.label:<16} {m.mean_dice:7.4f} {fmt(m.mean_hd95_mm, '8.2f', 8)}  "
            f"{fmt(m.held_out_mean_dice, '.4f', 6)} ({m.held_out_cases})"
        )
    if args.csv:
        print(f"csv: {args.csv}")
    return 0
