"""How reading + resampling CT volumes scales over threads of one process (a Ray actor) and over processes.

`python -m asfda.bench.cost.reading [--volumes 16] [--shape 384 384 200] [--workers 1 2 4 8 16]`

A scoring actor reads its next cases in threads while the device works; whether that keeps a GPU fed
depends on how far reading scales over threads (the GIL) against processes (the single-process path's
DataLoader workers). Synthetic int16 CT-like volumes at 0.8 x 0.8 x 1.0 mm, gzipped NIfTI, resampled to
1.5 mm as a CT model config would; torch uses one thread per worker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import List

import numpy as np

SPACING = [1.5, 1.5, 1.5]


def _write(path: str, shape, seed: int) -> None:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:2]], indexing="ij"), -1)
    body = ((grid / [0.8, 0.6]) ** 2).sum(-1) <= 1
    volume = (np.where(body[..., None], 40, -1000) + rng.normal(0, 20, shape)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 1.0, 1.0])), path)


def _read(path: str) -> tuple:
    import torch

    from asfda.io.volumes import load_volume
    from asfda.models.config import ModelConfig
    from asfda.models.preprocess import prepare_image

    torch.set_num_threads(1)
    config = ModelConfig(labels={"background": 0, "organ": 1}, spacing=SPACING, roi_size=[96, 96, 96])
    return tuple(prepare_image(load_volume(path), config.validate()).shape)


def measure(paths: List[str], workers: List[int]) -> List[dict]:
    rows = []
    _read(paths[0])  # imports and first-call costs out of the timings
    for count in workers:
        for kind, pool in (("threads", ThreadPoolExecutor), ("processes", ProcessPoolExecutor)):
            with pool(count) as executor:
                list(executor.map(_read, paths[:count]))  # warm: process start and imports
                started = time.perf_counter()
                list(executor.map(_read, paths))
                seconds = time.perf_counter() - started
            rows.append({"kind": kind, "workers": count, "seconds": seconds, "per_volume_s": seconds / len(paths)})
            print(f"{kind:>9} x{count:<3} {seconds:7.2f} s for {len(paths)} volumes", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asfda.bench.cost.reading")
    parser.add_argument("--volumes", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=[384, 384, 200])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"ct{i:02d}.nii.gz") for i in range(args.volumes)]
        with ProcessPoolExecutor(min(len(paths), os.cpu_count() or 1)) as executor:
            list(executor.map(_write, paths, [tuple(args.shape)] * len(paths), range(len(paths))))
        size = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e6
        print(
            f"{len(paths)} volumes of {'x'.join(map(str, args.shape))} int16, {size:.0f} MB each (.nii.gz); "
            f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        rows = measure(paths, args.workers)
    base = next(r["seconds"] for r in rows if r["workers"] == 1 and r["kind"] == "threads")
    for row in rows:
        print(f"{row['kind']:>9} x{row['workers']:<3} speed-up {base / row['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
