"""Write the benchmark's Markdown report, CSV tables and Dice-vs-budget plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Dict, List

from asfda.bench.headline import headline
from asfda.bench.plot import plot_budget
from asfda.bench.settings import subgroups
from asfda.bench.stats import arm_name, group_arms, mean_std, subgroup_means, worst_subgroup


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f} ± {std:.3f} (n={n})"


def summary_rows(
    phases: Dict[str, List[Dict]], unadapted: Dict, field: str = "test_by_anatomy", noun: str = "anatomy"
) -> List[Dict]:
    base = unadapted.get(field, {})
    worst_column = f"worst_{noun.split()[-1]}"  # worst_anatomy, or worst_band
    out = []
    for phase in ("reference", "ablation", "main", "multiround"):
        by_variant: Dict[str, List[Dict]] = {}
        for row in phases.get(phase, []):
            by_variant.setdefault(row["variant"], []).append(row)
        for variant, rows in by_variant.items():
            for key, arm in group_arms(rows).items():
                strategy, pseudo, k, rounds = key
                test, val = mean_std([r["test_dice"] for r in arm]), mean_std([r["val_dice"] for r in arm])
                group, worst = worst_subgroup(arm, field)
                line = {
                    "phase": phase,
                    "variant": variant,
                    "strategy": strategy,
                    "pseudo": pseudo,
                    "k": k,
                    "rounds": rounds,
                    "seeds": len(arm),
                    "test_mean": test[0],
                    "test_std": test[1],
                    "val_mean": val[0],
                    "val_std": val[1],
                    worst_column: group,
                    "worst_dice": worst,
                    "worst_unadapted": base.get(group, float("nan")),
                    "anatomies_in_picks": mean_std([len(r.get("picks_by_anatomy", {})) for r in arm])[0],
                    "pseudo_labels": mean_std([r["n_pseudo"] for r in arm])[0],
                }
                line.update({f"test_{g}": v for g, v in subgroup_means(arm).items()})
                line.update({f"band_{g}": v for g, v in subgroup_means(arm, "test_by_severity").items()})
                line.update({f"class_{g}": v for g, v in subgroup_means(arm, "test_by_class").items()})
                line.update({f"protocol_{g}": v for g, v in subgroup_means(arm, "test_by_protocol").items()})
                line["labelled_foreground_voxels"] = mean_std([r.get("labelled_foreground_voxels", 0) for r in arm])[0]
                gates = [g["activated"] for r in arm for g in r.get("gate", [])]
                line["gate_activated_share"] = sum(gates) / len(gates) if gates else float("nan")
                out.append(line)
    return out


def _write_csv(path: Path, rows: List[Dict]) -> None:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: (f"{v:.4f}" if isinstance(v, float) else v) for c, v in r.items()})


def _arm_table(rows: List[Dict], budgets: List[int], cell: Callable[[List[Dict]], str]) -> List[str]:
    """One row per strategy and pseudo-label setting, one column per budget, `cell` rendering each arm."""
    lines = ["| strategy | " + " | ".join(f"k={k}" for k in budgets) + " |", "|---|" + "---|" * len(budgets)]
    arms = group_arms(rows)
    for strategy in dict.fromkeys(s for (s, _, _, _) in arms):
        for pseudo in (False, True):
            cells = [
                cell(arms[(strategy, pseudo, k, 1)]) if arms.get((strategy, pseudo, k, 1)) else "" for k in budgets
            ]
            if any(cells):
                lines.append(f"| {arm_name(strategy, pseudo)} | " + " | ".join(cells) + " |")
    return lines


def _main_table(rows: List[Dict], budgets: List[int]) -> List[str]:
    return _arm_table(rows, budgets, lambda arm: _fmt(*mean_std([r["test_dice"] for r in arm]), len(arm)))


def _worst_table(rows: List[Dict], budgets: List[int], base: Dict, field: str = "test_by_anatomy") -> List[str]:
    def cell(arm: List[Dict]) -> str:
        group, worst = worst_subgroup(arm, field)
        return f"{group} {worst:.3f} ({worst - base.get(group, float('nan')):+.3f})"

    return _arm_table(rows, budgets, cell)


def write_report(out: Path, phases: Dict[str, List[Dict]], meta: Dict) -> Path:
    out = Path(out)
    unadapted = next((r for r in phases.get("reference", []) if r["variant"] == "unadapted"), {})
    field, noun = subgroups(meta["settings"].get("task", "brain"), meta["settings"].get("pool_mix", "uniform"))
    summary = summary_rows(phases, unadapted, field, noun)
    _write_csv(out / "summary.csv", summary)
    _write_csv(
        out / "runs.csv",
        [
            {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
            for rows in phases.values()
            for r in rows
        ],
    )
    head = headline(phases.get("main", []), unadapted, field, noun)
    (out / "headline.json").write_text(json.dumps({"meta": meta, **head}, indent=2, default=str))
    budgets = sorted({r["k"] for r in phases.get("main", [])})
    plot_budget(out / "dice_vs_budget.png", phases.get("main", []), unadapted, field, noun)
    from asfda.bench.report_md import markdown

    def worst_table(rows, budgets, base):
        return _worst_table(rows, budgets, base, field)

    text = markdown(phases, meta, unadapted, summary, head, budgets, _main_table, worst_table, field, noun)
    (out / "report.md").write_text(text)
    return out / "report.md"
