"""`asfda report`: per adaptation round, the cases, annotated slices and annotator minutes it cost, and with
reference labels the Dice it gained per minute."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from asfda.cli.common import add_command, add_datastore, add_json, add_threads, print_json


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "report",
        "cost and gain of each adaptation round: cases, slices, minutes, Dice per minute",
        "A round is a model version and the clinician labels new to it (not in its parent's training set, or "
        "corrected since). Minutes are the active editing time the Slicer module (or `asfda label submit "
        "--effort`) recorded with each label; 'unknown' when a label of the round has none. Annotated slices "
        "come from the effort record, else a sparse label's annotated slices, else every slice along the "
        "thickest-slice axis. With --references each version is evaluated on those labels (nothing in the "
        "datastore changes) and the Dice gained over its parent is divided by the round's minutes.",
    )
    add_datastore(p)
    p.add_argument("--references", type=Path, help="folder of reference labels (CASE.nii.gz), as for evaluate")
    p.add_argument("--plot", type=Path, help="write Dice against cumulative minutes to this image (--references)")
    add_json(p, "rounds")
    add_threads(p)
    p.set_defaults(func=run)


def _num(value: Optional[float], spec: str, unknown: str = "unknown") -> str:
    return unknown if value is None else format(value, spec)


def run(args) -> int:
    from asfda.core.errors import AsfdaError
    from asfda.loop import LoopSession, SessionSettings
    from asfda.loop.evaluate import reference_labels
    from asfda.loop.report import effort_report, mean_dice

    if args.plot and not args.references:
        raise AsfdaError("--plot draws Dice against minutes: give --references DIR too")
    session = LoopSession.open(args.datastore, SessionSettings.from_args(args))
    dice_of = None
    if args.references:
        references, skipped = reference_labels(args.references, session.store.case_ids())
        for name in skipped:
            print(f"asfda report: skipped {name} (no case of that name in the datastore)", file=sys.stderr)

        def dice_of(version: str) -> float:
            return mean_dice(session.evaluate(references, version).summary)

    report = effort_report(session.store, dice_of)
    if args.plot:
        from asfda.cli.report_plot import plot_dice_per_minute  # matplotlib: only when a plot is asked for

        plot_dice_per_minute(report, args.plot)
    if args.json:
        print_json({**report.to_dict(), "plot": str(args.plot) if args.plot else None})
        return 0
    if not report.rounds:
        print("no adaptation round yet: no model version records the labels it trained on (`asfda adapt`)")
        return 0
    if report.baseline_dice is not None:
        print(f"start: {report.baseline} mean Dice {report.baseline_dice:.4f}")
    print(
        f"{'round':<8} {'parent':<8} {'cases':>5} {'slices':>6} {'minutes':>8} {'cum min':>8} {'Dice':>7} "
        f"{'gain':>7} {'Dice/min':>9}"
    )
    for r in report.rounds:
        print(
            f"{r.version:<8} {r.parent or '-':<8} {r.cases:>5} {r.annotated_slices:>6} {_num(r.minutes, '8.1f'):>8} "
            f"{_num(r.cumulative_minutes, '8.1f'):>8} {_num(r.dice, '7.4f', '-'):>7} "
            f"{_num(r.dice_gain, '+7.4f', '-'):>7} {_num(r.dice_per_minute, '+9.5f', '-'):>9}"
        )
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
