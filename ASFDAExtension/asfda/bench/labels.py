"""`asfda bench labels`: reference, ablation (validation split), main grid and multi-round phases, then the report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from tqdm import tqdm

from asfda.bench.anatomies import mask_summary
from asfda.bench.context import BenchContext
from asfda.bench.plan import (
    ablation_specs,
    code_pick,
    headline_specs,
    main_specs,
    multiround_specs,
    pick_default,
    reference_specs,
)
from asfda.bench.runner import evaluate, execute
from asfda.bench.settings import BenchSettings, for_task
from asfda.bench.spec import RunSpec
from asfda.bench.store import ResultStore


def run_phase(
    ctx: BenchContext,
    store: ResultStore,
    specs: List[RunSpec],
    name: str,
    execute_missing: bool = True,
    shard: Tuple[int, int] = (0, 1),
) -> List[Tuple[RunSpec, Dict]]:
    """Run the specs not in the store yet (this shard's seeds), then every spec's row as this phase sees it."""
    fingerprint = ctx.settings.fingerprint()
    index, count = shard
    # Sharded by seed: a seed's pool template is written by one process only.
    mine = [s for s in specs if s.seed % count == index]
    todo = [s for s in mine if s.key(fingerprint) not in store] if execute_missing else []
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        desc=f"bench {name}",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None,
    )
    for spec in todo:
        key = spec.key(fingerprint)
        if count > 1:
            store.refresh()  # another shard may have finished a run with the same effective configuration
        if key in store:  # an earlier spec of this phase had the same effective configuration
            bar.update(1)
            continue
        if spec.strategy == "none":
            row = evaluate(ctx, ctx.network, spec, [], 0, float("nan"), 0.0)
        else:
            row = execute(ctx, spec)
        store.add(key, row)
        bar.set_postfix_str(
            f"{spec.strategy} k={spec.k} pl={int(spec.pseudo)} s={spec.seed} test={row['test_dice']:.3f}"
        )
        bar.update(1)
    bar.close()
    if execute_missing and count > 1:
        _wait_for_other_shards(store, [s.key(fingerprint) for s in specs], name)
    # The phase's own view of the rows: a run shared with another phase carries this phase's name here.
    seen, view = set(), []
    for s in specs:  # one row per distinct run: two specs of a phase may resolve to the same run
        key = s.key(fingerprint)
        if key in store and key not in seen:
            seen.add(key)
            view.append((s, {**store.rows[key], "phase": s.phase, "variant": s.variant}))
    return view


def _wait_for_other_shards(store: ResultStore, keys: List[str], phase: str, poll_s: float = 15.0) -> None:
    """Shards meet after every phase: the ablation phase's pick and the report need every shard's runs."""
    waiting_since = time.monotonic()
    while True:
        store.refresh()
        missing = [k for k in keys if k not in store]
        if not missing:
            return
        print(
            f"bench {phase}: waiting for {len(missing)} runs of the other shards "
            f"({time.monotonic() - waiting_since:.0f} s)",
            file=sys.stderr,
        )
        time.sleep(poll_s)


def run_labels(
    settings: BenchSettings,
    data_cache: Path,
    out: Path,
    log: Callable[[str], None] = print,
    report_only: bool = False,
    shard: Tuple[int, int] = (0, 1),
) -> Dict[str, List[Dict]]:
    """Run every missing run of every phase, then write the report; `report_only` reports what is cached."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ctx = BenchContext(settings, data_cache, out, log)
    store = ResultStore(out / "cache")
    log(
        f"anatomies: {', '.join(a.name for a in ctx.anatomies)}; source model on {', '.join(settings.source_anatomies)}"
    )
    masks = {a.name: mask_summary(a, settings.spacing) for a in ctx.anatomies}
    for name, m in masks.items():
        log(
            f"  {name:<8} brain mask {m['brain_ml']:.0f} ml, {m['brain_share_of_head']:.2f} of the head, "
            f"{m['dark_share_of_brain']:.3f} CSF-dark"
        )
    pool_size = len(ctx.pool(0).items)
    phases: Dict[str, List[Dict]] = {}
    reference = reference_specs(settings, pool_size)
    if settings.headline_only:  # the unadapted model only
        reference = [s for s in reference if s.variant == "unadapted"]
    phases["reference"] = [r for _, r in run_phase(ctx, store, reference, "reference", not report_only, shard)]
    # Without the ablation phase, run the recipe that landed in the code defaults (the earlier pick).
    picked: Dict[str, Dict] = code_pick()
    pick_log: List[Dict] = []
    if settings.ablations:
        phases["ablation"] = [
            r for _, r in run_phase(ctx, store, ablation_specs(settings), "ablation", not report_only, shard)
        ]
        picked, pick_log = pick_default(phases["ablation"])
        log(f"picked on the validation split: {json.dumps(picked)}")
    main = headline_specs(settings, picked) if settings.headline_only else main_specs(settings, picked)
    phases["main"] = [r for _, r in run_phase(ctx, store, main, "main", not report_only, shard)]
    multiround = [] if settings.headline_only else multiround_specs(settings, picked)
    phases["multiround"] = [r for _, r in run_phase(ctx, store, multiround, "multiround", not report_only, shard)]
    from asfda.bench.diagnostics import diagnostics
    from asfda.bench.report import write_report

    diag = diagnostics(ctx)
    meta = {
        "settings": settings.__dict__,
        "fingerprint": settings.fingerprint(),
        "anatomies": [a.name for a in ctx.anatomies],
        "brain_masks": masks,
        "picked": picked,
        "code_defaults_match_pick": _code_matches(picked),
        "pick_log": pick_log,
        "diagnostics": diag,
        "seconds": time.monotonic() - started,
        "threads": settings.threads,
    }
    write_report(out, phases, meta)
    return phases


def _code_matches(picked: Dict[str, Dict]) -> bool:
    from asfda.bench.spec import BASELINE_GUARDS, BASELINE_RANKING, BASELINE_RELIABILITY, code_defaults

    wanted = {
        "ranking": {**BASELINE_RANKING, **picked.get("ranking", {})},
        "reliability": {**BASELINE_RELIABILITY, **picked.get("reliability", {})},
        "guards": {**BASELINE_GUARDS, **picked.get("guards", {})},
    }
    return wanted == code_defaults()


def settings_from_args(args, base: Optional[BenchSettings] = None) -> BenchSettings:
    settings = base or BenchSettings()
    for name in ("seeds", "headline_seeds", "adapt_steps", "threads", "gate_decide_from_labels"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    for name in ("pool_mix", "source_model_dir", "source_network"):
        if getattr(args, name, None):
            setattr(settings, name, getattr(args, name))
    if getattr(args, "budgets", None):
        settings.budgets = tuple(args.budgets)
    if getattr(args, "strategies", None):
        settings.strategies = tuple(args.strategies)
    if getattr(args, "no_ablations", False):
        settings.ablations = False
    if getattr(args, "headline_only", False):
        settings.headline_only, settings.ablations = True, False
    return for_task(settings, getattr(args, "task", None) or "brain")
