"""`asfda bench pool`: ranking memory and time against pool size, through the product's own rank_pool.

For each pool size a datastore of synthetic volumes is written once; then, each in a fresh process (so
one run's allocator state cannot hide the next one's memory), the first rank and a re-rank with the same
model run while the parent samples the resident memory of the whole process tree (the job process and
its DataLoader readers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import psutil

SAMPLE_INTERVAL_S = 0.02


@dataclass
class PoolBenchSettings:
    sizes: Tuple[int, ...] = (4, 32, 128)
    shape: Tuple[int, int, int] = (160, 160, 128)
    roi: Tuple[int, int, int] = (96, 96, 96)
    sw_batch_size: int = 4
    device: str = "cpu"
    loader_workers: int = 1
    threads: int = 0  # 0: torch's default


# The spleen_ct_segmentation bundle's UNet shape (4.8 M parameters, batch norm).
POOL_UNET = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2}


def write_pool(
    root: Path,
    shape: Tuple[int, int, int],
    count: int,
    roi: Tuple[int, int, int] = (96, 96, 96),
    sw_batch_size: int = 4,
    network_args: Optional[Dict] = None,
) -> None:
    """A datastore of `count` synthetic body-like volumes (uncompressed NIfTI, 1.5 mm) and an untrained
    batch-norm UNet as v0001; files already there are kept, so a larger pool extends a smaller one."""
    import nibabel as nib
    import torch

    from asfda.data.datastore import Datastore
    from asfda.models.config import ModelConfig
    from asfda.models.networks import build_network

    store = Datastore(root)
    if store.models.active_version() is None:
        config = ModelConfig(
            network="UNet",
            network_args=dict(network_args or POOL_UNET),
            roi_size=list(roi),
            sw_batch_size=sw_batch_size,
        )
        torch.manual_seed(0)
        store.models.publish(build_network(config), config, parent=None, note="bench pool")
    for index in range(count):
        path = store.images_dir / f"vol{index:04d}.nii"
        if not path.exists():
            image = body_volume(shape, np.random.default_rng(index))
            nib.save(nib.Nifti1Image(image, np.diag([1.5, 1.5, 1.5, 1.0])), str(path))


def body_volume(shape: Tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A CT-sized stand-in: a noisy ellipsoid 'body' of random size and contrast (no template needed)."""
    radius, stretch, contrast = rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.2, 3), rng.uniform(40, 80)
    axes = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) * f for s, f in zip(shape, stretch)], indexing="ij")
    body = (sum(a * a for a in axes) < radius * radius).astype(np.float32)
    return body * np.float32(contrast) + rng.normal(0, 10, shape).astype(np.float32)


def _write_pool(root: Path, settings: PoolBenchSettings, count: int) -> None:
    write_pool(root, settings.shape, count, settings.roi, settings.sw_batch_size)


def _linked_pool(shared: Path, root: Path, size: int) -> Path:
    """A datastore with the shared model and the first `size` shared volumes (symbolic links: written once)."""
    import shutil

    from asfda.data.datastore import Datastore

    if not (root / "models").exists():
        shutil.copytree(shared / "models", root / "models")
    store = Datastore(root)
    for source in sorted((shared / "images").iterdir())[:size]:
        link = store.images_dir / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    return root


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _measured_rank(root: Path, settings: PoolBenchSettings) -> Dict:
    spec = {
        "root": str(root),
        "device": settings.device,
        "workers": settings.loader_workers,
        "threads": settings.threads,
    }
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "asfda.bench.cost.pool", json.dumps(spec)], stdout=subprocess.PIPE, text=True
    )
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, _tree_rss(process))
        time.sleep(SAMPLE_INTERVAL_S)
    out = child.stdout.read()
    if child.returncode != 0:
        raise RuntimeError(f"rank child failed with exit code {child.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "peak_rss_mb": peak / 2**20, "process_s": time.perf_counter() - started}


def run_pool_bench(settings: PoolBenchSettings, out: Path) -> Dict:
    out = Path(out)
    rows: List[Dict] = []
    shared = out / "all"
    _write_pool(shared, settings, max(settings.sizes))
    for size in settings.sizes:
        root = _linked_pool(shared, out / f"pool-{size}", size)
        first = _measured_rank(root, settings)
        again = _measured_rank(root, settings)
        rows.append({"pool": size, "first": first, "rerank": again})
        print(
            f"pool {size}: first rank {first['rank_s']:.1f} s (peak {first['peak_rss_mb']:.0f} MB), "
            f"re-rank {again['rank_s']:.2f} s (peak {again['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
        _forget_cache(root)  # the next invocation measures a first rank again
    report = {"settings": asdict(settings), "rows": rows}
    (out / "pool.json").write_text(json.dumps(report, indent=2))
    (out / "pool.md").write_text(format_pool(report) + "\n")
    return report


def _forget_cache(root: Path) -> None:
    from asfda.core.sqlite_db import connect

    with connect(root / "asfda.db") as db:
        db.execute("DELETE FROM signals")


def format_pool(report: Dict) -> str:
    s = report["settings"]
    rows = report["rows"]
    lines = [
        f"# Ranking against pool size: {'x'.join(map(str, s['shape']))} volumes, roi {tuple(s['roi'])}, "
        f"sw_batch_size {s['sw_batch_size']}, {s['device']}, {s['loader_workers']} reader process(es)",
        "",
        "| pool | first rank s | s per volume | peak RSS MB (job + readers) | re-rank s (x first) | re-rank peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        first, again = r["first"], r["rerank"]
        lines.append(
            f"| {r['pool']} | {first['rank_s']:.1f} | {first['rank_s'] / r['pool']:.2f} | "
            f"{first['peak_rss_mb']:.0f} | {again['rank_s']:.2f} ({again['rank_s'] / first['rank_s']:.3f}x) | "
            f"{again['peak_rss_mb']:.0f} |"
        )
    if len(rows) >= 2:
        growth = rows[1]["first"]["peak_rss_mb"] - rows[0]["first"]["peak_rss_mb"]
        lines += ["", f"Peak memory growth from {rows[0]['pool']} to {rows[1]['pool']} volumes: {growth:.0f} MB."]
    return "\n".join(lines)


def _child(spec: Dict) -> Dict:
    import torch

    from asfda.data.datastore import Datastore
    from asfda.loop.rank import rank_pool
    from asfda.query.strategies import RankingOptions
    from asfda.scoring import ScoringOptions

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    store = Datastore(Path(spec["root"]), create=False)
    started = time.perf_counter()
    outcome = rank_pool(
        store, RankingOptions(k=4), spec["device"], scoring=ScoringOptions(loader_workers=spec["workers"])
    )
    if spec["device"].startswith("cuda"):
        torch.cuda.synchronize()
    return {"rank_s": time.perf_counter() - started, "scored": outcome.scored, "cached": outcome.cached}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
