"""`asfda bench labels --cost-axis`: Dice against annotated slices and estimated minutes, whole volumes against
sparse labels at the same slice budgets, on one or more pool compositions; then its report (cost_axis.md)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

from asfda.bench.context import BenchContext
from asfda.bench.labels import run_phase
from asfda.bench.plan import code_pick
from asfda.bench.plot_cost import plot_dice_per_minute
from asfda.bench.report_cost import cost_axis_markdown, cost_axis_summary
from asfda.bench.settings import BenchSettings
from asfda.bench.slice_budget import cost_axis_specs, slices_per_whole_volume
from asfda.bench.spec import RunSpec
from asfda.bench.store import ResultStore

__all__ = ["run_cost_axis"]

POOLS = ("uniform", "hospital")


def run_cost_axis(
    settings: BenchSettings,
    data_cache: Path,
    out: Path,
    pools: Sequence[str] = POOLS,
    log: Callable[[str], None] = print,
    report_only: bool = False,
    shard: Tuple[int, int] = (0, 1),
) -> Dict:
    """Run every missing run of the cost axis on each pool (cached in OUT/cache/runs.jsonl, resumable), then write
    OUT/cost_axis.md, OUT/cost_axis.json and OUT/dice_per_minute.png from every finished run of these pools.

    Returns:
        the summary written to cost_axis.json (per pool: arms, target tests, baseline tests).
    """
    unknown = [p for p in pools if p not in POOLS]
    if unknown or not pools:
        raise ValueError(f"pools must be among {', '.join(POOLS)}, not {', '.join(unknown) or 'none'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    store = ResultStore(out / "cache")
    picked = code_pick()  # the recipe in the code defaults (no ablation phase on this axis)
    rows: Dict[str, List[Dict]] = {}
    fingerprints: Dict[str, str] = {}
    for mix in pools:
        pool_settings = copy.deepcopy(settings)
        pool_settings.pool_mix = mix
        ctx = BenchContext(pool_settings, data_cache, out, log)
        pool_size = len(ctx.pool(0).items)
        specs = [RunSpec("cost", "unadapted", "none", 0, False, 0)]
        specs += cost_axis_specs(pool_settings, picked, pool_size)
        log(f"cost axis, {mix} pool ({pool_size} volumes): {len(specs)} runs")
        rows[mix] = [{**r, "pool": mix} for _, r in run_phase(ctx, store, specs, f"cost {mix}", not report_only, shard)]
        fingerprints[mix] = pool_settings.fingerprint()
    meta = {
        "settings": {k: v for k, v in settings.__dict__.items() if k != "pool_mix"},
        "fingerprints": fingerprints,
        "slices_per_whole_volume": slices_per_whole_volume(settings),
        "seconds": time.monotonic() - started,
    }
    summary = cost_axis_summary(rows, meta)
    (out / "cost_axis.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "cost_axis.md").write_text(cost_axis_markdown(summary))
    plot_dice_per_minute(out / "dice_per_minute.png", summary)
    return summary
