"""The cost axis's summary and Markdown: Dice against annotated slices and estimated minutes, the sparse target
(paired over seeds) and asfda against the ClaSP PE-style baseline and foreground_random at the same budgets."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from asfda.bench.settings import subgroups
from asfda.bench.slice_budget import TARGET_BASELINES, TARGET_SHARE
from asfda.bench.stats import arm_name, holm, mean_std, paired_test, subgroup_means, worst_subgroup

__all__ = ["REACH_TOLERANCE", "cost_axis_markdown", "cost_axis_summary"]

# "Reaches the Dice of": the paired mean difference is at most half a Dice point below (smaller than the spread
# between seeds of any arm measured so far).
REACH_TOLERANCE = 0.005
ALPHA = 0.05

ArmKey = Tuple[str, bool, int, int]  # strategy, pseudo-labels, volumes, slices per volume (0: whole)


def _arm_key(row: Dict) -> ArmKey:
    return (row["strategy"], bool(row["pseudo"]), int(row["k"]), int(row.get("slices_per_volume", 0)))


def _form(key: ArmKey) -> str:
    return f"whole, {key[2]} volume(s)" if key[3] == 0 else f"sparse, {key[2]} x {key[3]} slices"


def _by_seed(rows: Sequence[Dict], value=lambda r: r["test_dice"]) -> Dict[int, float]:
    return {int(r["seed"]): float(value(r)) for r in rows}


def _arm_summary(key: ArmKey, rows: List[Dict], field: str) -> Dict:
    dice, sd = mean_std([r["test_dice"] for r in rows])
    worst_name, worst = worst_subgroup(rows, field)
    return {
        "arm": arm_name(key[0], key[1]),
        "strategy": key[0],
        "pseudo": key[1],
        "volumes": key[2],
        "slices_per_volume": key[3],
        "form": _form(key),
        "n": len(rows),
        "seeds": sorted(int(r["seed"]) for r in rows),
        "annotated_slices": mean_std([r.get("annotated_slices", float("nan")) for r in rows])[0],
        "annotation_minutes": mean_std([r.get("annotation_minutes", float("nan")) for r in rows])[0],
        "label_masks": mean_std([r.get("label_masks", 0) for r in rows])[0],
        "test_dice": dice,
        "test_dice_std": sd,
        "worst_subgroup": worst_name,
        "worst_subgroup_dice": worst,
        "subgroups": subgroup_means(rows, field),
    }


def _comparison(name: str, a: List[Dict], b: List[Dict], group: Optional[str], field: str) -> Optional[Dict]:
    test = paired_test(_by_seed(a), _by_seed(b))
    if test is None:
        return None
    out = {"comparison": name, **test}
    if group:  # the same paired difference on the worst subgroup of the reference arm
        seeds_a = _by_seed(a, lambda r: r.get(field, {}).get(group, float("nan")))
        seeds_b = _by_seed(b, lambda r: r.get(field, {}).get(group, float("nan")))
        worst = paired_test(seeds_a, seeds_b)
        out["worst_subgroup"], out["worst_subgroup_gain"] = group, worst["gain"] if worst else float("nan")
    return out


def _pool_summary(mix: str, rows: List[Dict], meta: Dict) -> Dict:
    field, noun = subgroups(meta["settings"].get("task", "brain"), mix)
    unadapted = next((r for r in rows if r["strategy"] == "none"), {})
    arms: Dict[ArmKey, List[Dict]] = {}
    for row in rows:
        if row["strategy"] != "none":
            arms.setdefault(_arm_key(row), []).append(row)
    summaries = [_arm_summary(k, v, field) for k, v in arms.items()]
    summaries.sort(key=lambda a: (a["annotated_slices"], a["slices_per_volume"], a["strategy"], not a["pseudo"]))
    top_k = max((k[2] for k in arms if k[3] == 0), default=0)
    whole_top = arms.get(("asfda", True, top_k, 0), [])
    whole_slices = mean_std([r.get("annotated_slices", float("nan")) for r in whole_top])[0]
    targets = []
    group = worst_subgroup(whole_top, field)[0] if whole_top else None
    for key, arm_rows in sorted(arms.items()):
        slices = mean_std([r.get("annotated_slices", float("nan")) for r in arm_rows])[0]
        if key[:2] != ("asfda", True) or key[3] == 0 or not slices <= TARGET_SHARE * whole_slices:
            continue
        test = _comparison(f"asfda + PL {_form(key)} - whole {top_k}", arm_rows, whole_top, group, field)
        if test is not None:
            test.update(slices=slices, share_of_slices=slices / whole_slices, met=test["gain"] >= -REACH_TOLERANCE)
            targets.append(test)
    baselines = []
    for key, arm_rows in sorted(arms.items()):
        if key[0] != "asfda":
            continue
        for other in TARGET_BASELINES:
            against = arms.get((other,) + key[1:], [])
            test = _comparison(
                f"asfda - {other}{' + PL' if key[1] else ''}, {_form(key)}", arm_rows, against, None, field
            )
            if test is not None:
                baselines.append({**test, "baseline": other, "form": _form(key), "pseudo": key[1]})
    for name in ("p_t", "p_wilcoxon"):  # one family: every asfda-vs-baseline comparison of this pool
        for test, adjusted in zip(baselines, holm([t[name] for t in baselines])):
            test[f"{name}_holm"] = adjusted
    for test in baselines:
        significant = test["p_t_holm"] == test["p_t_holm"] and test["p_t_holm"] < ALPHA
        test["verdict"] = (
            ("asfda better" if test["gain"] > 0 else "asfda WORSE") if significant else "no significant difference"
        )
    return {
        "subgroup_field": field,
        "subgroup_noun": noun,
        "unadapted": {
            "test_dice": unadapted.get("test_dice", float("nan")),
            "subgroups": unadapted.get(field, {}),
        },
        "arms": summaries,
        "whole_top_k": top_k,
        "whole_top_slices": whole_slices,
        "target_sparse": targets,
        "target_sparse_met": any(t["met"] for t in targets) if targets else None,
        "baselines": baselines,
    }


def cost_axis_summary(rows: Dict[str, List[Dict]], meta: Dict) -> Dict:
    """Per pool: every arm's slices, minutes, Dice and worst subgroup; the sparse target's and the baselines'
    paired tests (Holm over each pool's baseline family)."""
    return {"meta": meta, "pools": {mix: _pool_summary(mix, pool_rows, meta) for mix, pool_rows in rows.items()}}


def _f(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def cost_axis_markdown(summary: Dict) -> str:
    meta = summary["meta"]
    s = meta["settings"]
    lines = [
        "# ASFDA label benchmark: the cost axis (annotated slices, estimated minutes)",
        "",
        f"Grid {tuple(s['shape'])} at {s['spacing']} mm; {meta['slices_per_whole_volume']} slices along the sliced "
        f"(thickest) axis; {s['adapt_steps']} fine-tuning steps; validation gate "
        f"{'on' if s.get('cost_gate') else 'off'}; whole volumes at k = {', '.join(map(str, s['budgets']))} against "
        f"sparse labels of {', '.join(map(str, s['slices_per_volume']))} even slices per volume at the same slice "
        f"budgets. Minutes: asfda.core.annotation_cost's per-slice model (editing the model's draft). This "
        f"invocation {meta['seconds'] / 60:.1f} min.",
    ]
    for mix, pool in summary["pools"].items():
        noun = pool["subgroup_noun"]
        base = pool["unadapted"]
        lines += [
            "",
            f"## {mix} pool",
            "",
            f"Unadapted: test Dice {_f(base['test_dice'])}; "
            + ", ".join(f"{g} {_f(v)}" for g, v in base["subgroups"].items()),
            "",
            f"| arm | form | annotated slices | est. minutes | n | test Dice | worst {noun} |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in pool["arms"]:
            lines.append(
                f"| {a['arm']} | {a['form']} | {_f(a['annotated_slices'], '.0f')} | "
                f"{_f(a['annotation_minutes'], '.1f')} | {a['n']} | {_f(a['test_dice'])} ± {_f(a['test_dice_std'])} "
                f"| {a['worst_subgroup']} {_f(a['worst_subgroup_dice'])} |"
            )
        lines += [
            "",
            f"Target: sparse asfda + PL at <= {TARGET_SHARE:.0%} of the slices of whole-volume asfda + PL at "
            f"k = {pool['whole_top_k']} ({_f(pool['whole_top_slices'], '.0f')} slices) reaches its Dice (paired mean "
            f"difference >= -{REACH_TOLERANCE}):",
            "",
            "| comparison | share of slices | gain | std | n | p (t) | p (Wilcoxon) | worst-subgroup gain | met |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in pool["target_sparse"]:
            lines.append(
                f"| {t['comparison']} | {t['share_of_slices']:.0%} | {t['gain']:+.3f} | {t['gain_std']:.3f} | "
                f"{t['n']} | {_f(t['p_t'], '.3g')} | {_f(t['p_wilcoxon'], '.3g')} | "
                f"{t.get('worst_subgroup', '')} {_f(t.get('worst_subgroup_gain'), '+.3f')} | "
                f"{'met' if t['met'] else 'MISSED'} |"
            )
        if not pool["target_sparse"]:
            lines.append("| (not enough paired seeds) | | | | | | | | |")
        lines += [
            "",
            "asfda against the ClaSP PE-style baseline and foreground_random at the same budget (paired over "
            f"seeds; Holm over this pool's {len(pool['baselines'])} comparisons):",
            "",
            "| comparison | gain | std | n | p (t, Holm) | p (Wilcoxon, Holm) | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in pool["baselines"]:
            lines.append(
                f"| {t['comparison']} | {t['gain']:+.3f} | {t['gain_std']:.3f} | {t['n']} | "
                f"{_f(t['p_t_holm'], '.3g')} | {_f(t['p_wilcoxon_holm'], '.3g')} | {t['verdict']} |"
            )
    lines.append("")
    return "\n".join(lines)


