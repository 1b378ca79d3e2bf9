"""`asfda bench listing`: `Datastore.image_path` calls per second at a pool size, with the folder's listing
cached (the product) against one listing per call (what image_path did before, to refuse a duplicate case id).

The images are empty files: a lookup reads names only. The folder's timestamps are set back past the
listing's racy window (asfda.data.image_listing) as they are on any datastore not being written to.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from asfda.data.datastore import Datastore
from asfda.data.image_listing import RACY_WINDOW_S, scan_images

__all__ = ["format_listing", "run_listing"]


@dataclass(frozen=True)
class ListingFigures:
    cases: int
    cached_calls_per_s: float
    listing_per_call_calls_per_s: float


def _rate(work, seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        work(calls)
        calls += 1
    return calls / elapsed


def run_listing(cases: int = 2000, seconds: float = 2.0) -> ListingFigures:
    """Time both lookups on a fresh datastore of `cases` images for `seconds` each."""
    with tempfile.TemporaryDirectory(prefix="asfda-bench-listing-") as tmp:
        store = Datastore(Path(tmp) / "ds")
        ids = [f"case{i:05d}" for i in range(cases)]
        for case_id in ids:
            (store.images_dir / f"{case_id}.nii.gz").write_bytes(b"")
        # ctime cannot be set back: wait the racy window out instead, as a datastore at rest is.
        time.sleep(RACY_WINDOW_S + 0.1)
        os.stat(store.images_dir)

        def cached(i: int) -> None:
            store.image_path(ids[i % cases])

        def listing_per_call(i: int) -> None:
            case_id = ids[i % cases]
            names = scan_images(store.images_dir)[case_id]
            assert len(names) == 1

        return ListingFigures(cases, _rate(cached, seconds), _rate(listing_per_call, seconds))


def format_listing(figures: ListingFigures) -> str:
    rows: Dict[str, float] = {
        "listing cached per folder change (now)": figures.cached_calls_per_s,
        "one listing per call (before)": figures.listing_per_call_calls_per_s,
    }
    lines = [f"Datastore.image_path at {figures.cases} cases", "| lookup | calls/s |", "|---|---|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in rows.items()]
    ratio = figures.cached_calls_per_s / max(figures.listing_per_call_calls_per_s, 1e-9)
    lines.append(f"speed-up: {ratio:,.0f}x")
    return "\n".join(lines)
