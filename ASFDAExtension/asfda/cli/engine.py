"""Engine commands: rank, infer, adapt."""

from __future__ import annotations

import sys

from asfda.cli.common import add_command, add_datastore, add_json, add_threads, fmt, print_json, writes_datastore
from asfda.core.names import slice_rule_names, strategy_names
from asfda.core.progress import console_progress

# Written out so that `asfda --help` does not import torch; a test keeps it equal to GateOptions' default.
GATE_DECIDES_FROM = 11
# Torch-free names, so `asfda --help` stays fast.
STRATEGIES = strategy_names()


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "rank",
        "score unlabeled cases and print the ranked worklist",
        "Score every case without a clinician label with the active model and rank them; the first --k are "
        "picked for annotation. The ranking is stored in the datastore (the worker and Slicer show it).",
    )
    add_datastore(p)
    p.add_argument("--strategy", default="asfda", choices=STRATEGIES, help="query strategy")
    p.add_argument("--k", type=int, default=4, help="annotation budget: how many cases to pick")
    p.add_argument("--seed", type=int, default=0, help="seed of the strategies that draw at random")
    p.add_argument(
        "--slices-per-volume",
        dest="slices_per_volume",
        type=int,
        default=0,
        metavar="S",
        help="sparse annotation: ask for S slices of each pick instead of the whole volume (0: whole volumes)",
    )
    p.add_argument(
        "--slice-axis",
        dest="slice_axis",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="axis of the requested slices (auto: each volume's thickest-slice axis)",
    )
    p.add_argument(
        "--slice-rule",
        dest="slice_rule",
        default="even",
        choices=slice_rule_names(),
        help="which slices: evenly spaced across the predicted foreground, or the most uncertain ones",
    )
    add_json(p, "the ranking (one object per case)")
    add_threads(p)
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="score on a Ray cluster: auto, local (start one here, CPUs only) or ray://HOST:PORT; "
        "settings in ASFDA_RAY_* (docs/worker.md)",
    )
    p.set_defaults(func=writes_datastore("asfda rank", run_rank))

    p = add_command(subparsers, "infer", "predict cases with the active model (written to labels/prediction/)")
    add_datastore(p)
    p.add_argument("cases", nargs="*", help="case ids (default: all)")
    add_threads(p)
    p.set_defaults(func=writes_datastore("asfda infer", run_infer))

    p = add_command(
        subparsers,
        "adapt",
        "fine-tune on clinician labels + reliable pseudo-labels; publishes a new active version",
        "Fine-tune the active model on the clinician labels in labels/final/ (add them with `asfda label "
        "submit`) plus reliable, masked pseudo-labels of unlabeled cases, and publish the result as a new "
        "active version whose parent is the old one (`asfda model activate` rolls back).",
    )
    add_datastore(p)
    p.add_argument("--steps", type=int, default=80, help="fine-tuning steps (one random crop batch each)")
    p.add_argument("--no-pseudo", action="store_true", help="train on clinician labels only")
    p.add_argument(
        "--fill-unannotated",
        dest="fill_unannotated",
        action="store_true",
        help="sparse labels: let the model's confident voxels fill the part nobody annotated (as pseudo-labels)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of crop sampling, augmentation and batch order")
    p.add_argument(
        "--gate-decide-from",
        dest="gate_decide_from",
        type=int,
        default=GATE_DECIDES_FROM,
        metavar="N",
        help="with fewer clinician labels the validation gate's k-fold verdict is reported, not enforced "
        f"(0: always enforced) [{GATE_DECIDES_FROM}]",
    )
    add_json(p, "the outcome (version, activation, the gate's verdict, warnings, metrics)")
    add_threads(p)
    p.set_defaults(func=writes_datastore("asfda adapt", run_adapt))


def open_session(args):
    """The loop on --datastore with --device (and --ray): the one way every engine command starts."""
    from asfda.loop import LoopSession, SessionSettings

    return LoopSession.open(args.datastore, SessionSettings.from_args(args), progress=console_progress(args.command))


def report_taken_in(session) -> None:
    """The pre-flight's findings, one line each: labels taken in from labels/final/, duplicate cases skipped."""
    for case_id in session.taken_in:
        print(f"checked and recorded label found in labels/final/ for case {case_id}", file=sys.stderr, flush=True)
    for case_id, reason in session.duplicates.items():
        print(f"skipped case {case_id}: {reason}", file=sys.stderr, flush=True)


def slices_text(requested) -> str:
    """`axis 2: 5 9 13` for a pick's requested slices; empty for a whole volume."""
    return f"axis {requested['axis']}: " + " ".join(str(i) for i in requested["indices"]) if requested else ""


def rank_rows(ranked, version: str, requested_slices=None) -> list:
    requested_slices = requested_slices or {}
    return [
        {
            "rank": r.rank,
            "case_id": r.case_id,
            "score": r.score,
            "dkd": r.dkd,
            "asd": r.asd,
            "selected": bool(r.selected),
            "model_version": version,
            "knowledge_source": getattr(r, "knowledge_source", None),
            "requested_slices": requested_slices[r.case_id].to_dict() if r.case_id in requested_slices else None,
        }
        for r in ranked
    ]


def run_rank(args) -> int:
    from asfda.loop import RankRequest

    session = open_session(args)
    outcome = session.rank(RankRequest.from_args(args))
    report_taken_in(session)
    store = session.store
    if session.pool_scorer() is not None:
        print(session.pool_scorer().report.summary(), file=sys.stderr)
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows = rank_rows(outcome.ranked, outcome.model_version, outcome.requested_slices)
    stored = store.state.scores(args.strategy)
    source = stored[0].knowledge_source if stored else None  # what DKD measured against, for every case
    for row in rows:
        row["knowledge_source"] = source
        row["precision"] = outcome.precision
    if args.json:
        print_json(rows)
        return 0
    knowledge = f" DKD knowledge source: {source}" if source else ""
    print(
        f"{'rank':>4}  {'case':<24} {'DKD':>9} {'ASD':>7} {'score':>7}  pick   "
        f"(model {outcome.model_version}, {session.device}, {outcome.precision}){knowledge}"
    )
    for r in rows:
        print(
            f"{r['rank']:>4}  {r['case_id']:<24} {fmt(r['dkd'], '9.4f', 9)} {fmt(r['asd'], '7.4f', 7)} "
            f"{r['score']:7.4f}  {'*' if r['selected'] else ' '}    {slices_text(r['requested_slices'])}".rstrip()
        )
    return 0


def run_infer(args) -> int:
    session = open_session(args)
    for path in session.infer(args.cases):
        print(path)
    return 0


def advisory_warning(result) -> str:
    """The warning for a version the gate judged worse but could not keep inactive (too few labels)."""
    gate = result.gate or {}
    if not gate.get("advisory"):
        return ""
    dice = ""
    if gate.get("candidate_dice") is not None and gate.get("parent_dice") is not None:
        dice = f" (held-out Dice {gate['candidate_dice']:.4f} against {gate['parent_dice']:.4f})"
    state = "is active" if result.activated else "was published"
    return (
        f"the validation gate judged {result.version} worse than its parent {result.parent}{dice}; with "
        f"{result.metrics.get('labels', '?')} labels the verdict is advisory, so {result.version} {state}; "
        f"to roll back: asfda model activate --version {result.parent}"
    )


def adapt_outcome(result, warnings: list) -> dict:
    return {
        "version": result.version,
        "parent": result.parent,
        "activated": result.activated,
        "not_activated": result.not_activated,
        "gate": result.gate,
        "warnings": warnings,
        "pseudo_cases": result.pseudo_cases,
        "metrics": result.metrics,
    }


def _metric_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return f"[{len(value)}]"  # label sets, held-out ids: their count here, the whole in --json
    return str(value)


def run_adapt(args) -> int:
    from asfda.loop import AdaptRequest

    session = open_session(args)
    request = AdaptRequest.from_args(args)
    result = session.adapt(request)
    report_taken_in(session)
    if result.gate.get("pending"):
        # The version is in use already; its advisory verdict follows (the worker queues it behind any
        # interactive job; here it runs now, and Ctrl-C leaves the version active without one).
        if not args.json:
            print(f"new active model {result.version} (parent {result.parent}); computing the gate's advisory verdict")
        result.gate = session.verdict(result.version, request)
    warnings = [w for w in (advisory_warning(result),) if w]
    for warning in warnings:
        print(f"asfda adapt: warning: {warning}", file=sys.stderr, flush=True)
    if args.json:
        print_json(adapt_outcome(result, warnings))
        return 0
    if result.activated:
        print(f"new active model {result.version} (parent {result.parent}); {result.gate.get('reason', '')}")
    else:
        why = result.not_activated or result.gate.get("reason", "")
        print(
            f"model {result.version} published INACTIVE ({why}); "
            f"{session.store.models.active_version()} stays active; "
            f"to use it anyway: asfda model activate --version {result.version}"
        )
    print(f"pseudo-labelled cases: {len(result.pseudo_cases)}")
    print("metrics: " + ", ".join(f"{k}={_metric_text(v)}" for k, v in result.metrics.items()))
    return 0
