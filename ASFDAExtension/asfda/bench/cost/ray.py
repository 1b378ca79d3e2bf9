"""`asfda bench ray`: scoring throughput of 1, 2, 4 Ray CPU actors on one machine against one process.

One datastore of synthetic volumes and one model; every run starts from an empty signal cache, so each
one scores the whole pool. "Actors idle" is the share of the actors' wall time not spent reading and
scoring (dispatch, transfer, waiting on the coordinator): Ray's overhead, measured within one run, so
the machine's load does not blur it. Times are the scoring wall time (first submission to last result for Ray, the
`score_pool` call for one process); Ray's actor start (a fresh Python with torch and MONAI) is timed
apart, since a long rank pays it once. Also measured: how many signals per second the coordinator can
commit to the SQLite cache, the ceiling of any cluster size.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np


@dataclass
class RaySpeedSettings:
    volumes: int = 24
    shape: Tuple[int, int, int] = (64, 80, 64)
    roi: Tuple[int, int, int] = (32, 40, 32)
    actor_counts: Tuple[int, ...] = (1, 2, 4)
    cache_writes: int = 500
    overhead_pairs: int = 3  # one process and one actor back to back, for a ratio the machine's load cancels from
    tiny: bool = False

    @classmethod
    def from_args(cls, args) -> RaySpeedSettings:
        s = cls()
        if args.tiny:
            s.volumes, s.shape, s.roi, s.actor_counts, s.cache_writes = 4, (24, 24, 24), (16, 16, 16), (1, 2), 20
            s.overhead_pairs = 1
        if args.volumes:
            s.volumes = args.volumes
        if args.actors:
            s.actor_counts = tuple(args.actors)
        return s


@dataclass
class RaySpeedReport:
    settings: Dict
    load_before: List[float]
    load_after: List[float] = field(default_factory=list)
    single_process: Dict[str, float] = field(default_factory=dict)  # mode -> seconds for the pool
    ray: List[Dict] = field(default_factory=list)  # per actor count: scoring s, actor start s, retries
    overhead_ratios: List[float] = field(default_factory=list)  # one actor / one process, back to back
    cache_writes_per_s: float = 0.0
    cache_reads_per_s: float = 0.0


def _datastore(root: Path, settings: RaySpeedSettings):
    import nibabel as nib
    import torch

    from asfda.data.datastore import Datastore
    from asfda.models.config import ModelConfig
    from asfda.models.networks import build_network

    store = Datastore(root)
    config = ModelConfig(network="UNet", labels={"background": 0, "organ": 1}, roi_size=list(settings.roi))
    torch.manual_seed(0)
    store.models.publish(build_network(config.validate()), config, parent=None, note="bench ray")
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in settings.shape], indexing="ij"), axis=-1)
    for i in range(settings.volumes):
        radii = rng.uniform(0.4, 0.7, 3)
        organ = ((grid / radii) ** 2).sum(-1) <= 1.0
        image = np.where(organ, 1.0, 0.2) + rng.normal(0, 0.1 + 0.02 * i, settings.shape)
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), str(store.images_dir / f"vol{i:03d}.nii.gz"))
    return store


def _clear_cache(store) -> None:
    from asfda.core.sqlite_db import connect
    from asfda.scoring import SignalCache

    SignalCache(store.root / "asfda.db")  # creates the table on first use
    with connect(store.root / "asfda.db") as db:
        db.execute("DELETE FROM signals")


def _single_process(store, scorer, workers: int) -> float:
    from asfda.scoring import score_pool

    _clear_cache(store)
    scorer.options.loader_workers = workers
    started = time.perf_counter()
    result = score_pool(store, scorer, store.case_ids())
    assert result.scored == len(store.case_ids()), result.errors
    return time.perf_counter() - started


def _ray_run(store, scorer, actors: int, data: str) -> Dict:
    from asfda.scoring import RayOptions, RayPoolScorer

    _clear_cache(store)
    pool_scorer = RayPoolScorer(RayOptions("auto", actors=actors, data=data))
    started = time.perf_counter()
    result = pool_scorer(store, scorer, store.case_ids())
    total = time.perf_counter() - started
    report = pool_scorer.report
    assert result.scored == len(store.case_ids()), result.errors
    return {
        "actors": actors,
        "data": data,
        "scoring_s": report.wall_seconds,
        "actor_start_s": total - report.wall_seconds,
        "actor_busy_s": report.actor_seconds,
        "retries": report.retries,
    }


def _cache_rates(store, scorer, count: int) -> Tuple[float, float]:
    """Commits per second of one signal each (as a rank does), and keyed reads per second."""
    from asfda.scoring import SignalCache, SignalKey, score_pool

    signal = next(iter(score_pool(store, scorer, store.case_ids()[:1]).signals.values()))
    cache = SignalCache(Path(tempfile.mkdtemp(dir=store.root)) / "rate.db")
    keys = [SignalKey(f"case{i:05d}", "v0001", "fingerprint", "options") for i in range(count)]
    started = time.perf_counter()
    for key in keys:
        cache.put(key, signal)
    writes = count / (time.perf_counter() - started)
    started = time.perf_counter()
    assert len(cache.get_many(keys)) == count
    return writes, count / (time.perf_counter() - started)


def run_ray_speed(settings: RaySpeedSettings, out: Path) -> RaySpeedReport:
    import ray
    import torch

    from asfda.scoring import CaseScorer, ScoringOptions

    torch.set_num_threads(1)  # like each one-CPU actor
    report = RaySpeedReport(asdict(settings), list(os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        store = _datastore(Path(tmp) / "ds", settings)
        scorer = CaseScorer(store.models.load(), "cpu", ScoringOptions(loader_workers=0))
        _single_process(store, scorer, 0)  # warm-up: first-call costs (allocator, MONAI imports)
        report.single_process["loader_workers=0"] = _single_process(store, scorer, 0)
        report.single_process["loader_workers=1"] = _single_process(store, scorer, 1)
        scorer.options.loader_workers = 0
        started_here = not ray.is_initialized()  # a running Ray (a test's) is used as it is
        if started_here:
            # Logical CPUs: as many as the largest run asks, whatever the cores (the load is recorded with it).
            ray.init(num_cpus=max(settings.actor_counts), num_gpus=0, include_dashboard=False, log_to_driver=False)
        try:
            for _ in range(settings.overhead_pairs):
                alone = _single_process(store, scorer, 0)
                report.overhead_ratios.append(_ray_run(store, scorer, 1, "shared")["scoring_s"] / alone)
            for actors in settings.actor_counts:
                report.ray.append(_ray_run(store, scorer, actors, "shared"))
            report.ray.append(_ray_run(store, scorer, min(settings.actor_counts), "object-store"))
        finally:
            if started_here:
                ray.shutdown()
        report.cache_writes_per_s, report.cache_reads_per_s = _cache_rates(store, scorer, settings.cache_writes)
    report.load_after = list(os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_speed.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def format_ray_speed(report: RaySpeedReport) -> str:
    volumes = report.settings["volumes"]
    base = report.single_process["loader_workers=0"]
    lines = [
        f"{volumes} volumes of {'x'.join(map(str, report.settings['shape']))}, UNet, roi "
        f"{'x'.join(map(str, report.settings['roi']))}, 1 torch thread per process; load average "
        f"{report.load_before[0]:.1f} before, {report.load_after[0]:.1f} after",
        "",
        "| path | scoring s | volumes/s | vs one process | actor start s | actors idle |",
        "|---|---|---|---|---|---|",
    ]
    for mode, seconds in report.single_process.items():
        speed = f"{volumes / seconds:.2f} | {base / seconds:.2f}x"
        lines.append(f"| one process, {mode} | {seconds:.2f} | {speed} | - | - |")
    for run in report.ray:
        lines.append(
            f"| Ray, {run['actors']} actor(s), {run['data']} | {run['scoring_s']:.2f} | "
            f"{volumes / run['scoring_s']:.2f} | {base / run['scoring_s']:.2f}x | {run['actor_start_s']:.1f} | "
            f"{100.0 * (1 - run['actor_busy_s'] / (run['actors'] * run['scoring_s'])):.1f} % |"
        )
    lines.append("")
    if report.overhead_ratios:
        ratios = ", ".join(f"{100.0 * (r - 1):+.1f} %" for r in report.overhead_ratios)
        median = 100.0 * (float(np.median(report.overhead_ratios)) - 1)
        lines.append(f"Ray overhead at 1 actor, back to back with one process: median {median:+.1f} % ({ratios})")
    lines.append(
        f"SQLite signal cache: {report.cache_writes_per_s:.0f} commits/s (one signal each), "
        f"{report.cache_reads_per_s:.0f} keyed reads/s"
    )
    return "\n".join(lines)
