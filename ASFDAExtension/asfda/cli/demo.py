"""`asfda demo` command."""

from __future__ import annotations

import argparse
from pathlib import Path

from asfda.cli.common import add_command, add_threads


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "demo",
        "run the whole loop on real anatomy with a simulated annotator",
        "Build a source domain and a shifted target domain from the MNI152 anatomy, train a source "
        "model, rank the target pool, reveal the true labels of the top-k, adapt, and print target Dice "
        "before and after next to random selection. Writes a plot and a JSON report.",
    )
    p.add_argument("--out", type=Path, default=Path("asfda-demo"), help="output folder (replaced)")
    p.add_argument("--k", type=int, default=4, help="annotation budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic domains, training and selection")
    p.add_argument("--task", choices=["brain", "tissue"], default="brain", help="brain mask or GM/WM tissue labels")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asfda.demo.run import DemoSettings, format_report, run_demo

    settings = DemoSettings(k=args.k, seed=args.seed, task=args.task)
    if args.quick:
        settings = DemoSettings(
            k=min(args.k, 2),
            seed=args.seed,
            task=args.task,
            n_source=4,
            n_pool=6,
            n_test=2,
            source_steps=20,
            adapt_steps=4,
            sparse_k=3,
        )
    report = run_demo(args.out, settings)
    print(format_report(report))
    print(
        f"plot: {args.out / 'demo.png'}   report: {args.out / 'demo-report.json'}   datastore: {args.out / 'datastore'}"
    )
    return 0
