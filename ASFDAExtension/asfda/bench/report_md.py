"""The Markdown text of the benchmark report."""

from __future__ import annotations

from typing import Dict, List

from asfda.bench.report_gate import gate_section
from asfda.bench.stats import group_arms, mean_std


def _p(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}"


def _run_minutes(phases) -> float:
    # Each run once, though a run shared by two phases appears in both.
    unique = {r["key"]: r.get("seconds", 0.0) for rows in phases.values() for r in rows}
    return sum(unique.values()) / 60


def _network(s: Dict) -> str:
    if s.get("source_model_dir"):
        return f"source model brought from {s['source_model_dir']}"
    if s.get("source_network") == "swinunetr":
        return (
            "SwinUNETR (feature size 12, layer norm + group norm) with reference statistics on "
            f"{s.get('n_reference_volumes')} source volumes"
        )
    return f"UNet channels {tuple(s['channels'])} with batch norm"


def markdown(
    phases, meta, unadapted, summary, head, budgets, main_table, worst_table, field="test_by_anatomy", noun="anatomy"
) -> str:
    s = meta["settings"]
    lines = [
        "# ASFDA label-efficiency benchmark",
        "",
        f"Anatomies: {', '.join(meta['anatomies'])}; source model trained on {', '.join(s['source_anatomies'])} "
        f"(T1-like); target pool / validation / test drawn from all anatomies with distinct deformation seeds and "
        + (
            f"a hospital's mix: routine protocol (mild shift) and a rare one (strong shift) in "
            f"{s['rare_share']:.0%} of the pool, {s['rare_share_eval']:.0%} of validation and test"
            if s.get("pool_mix") == "hospital"
            else "shift severity uniform in [0, 1]"
        )
        + f". Every run goes through a Datastore folder with the worker's LoopSession (rank, adapt) "
        f"(validation gate included; the ACTIVE version is scored). Grid {tuple(s['shape'])} at {s['spacing']} mm; "
        + _network(s)
        + f"; {s['adapt_steps']} fine-tuning steps for every arm; every seed "
        f"draws its own pool ({s['n_pool_per_anatomy']} per anatomy). The runs took {_run_minutes(phases):.1f} min "
        f"summed ({meta['threads']} torch thread(s)); this invocation {meta['seconds'] / 60:.1f} min. Settings "
        f"fingerprint `{meta['fingerprint']}`.",
        "",
        f"Unadapted source model: test Dice {unadapted.get('test_dice', float('nan')):.3f}; per anatomy "
        + ", ".join(f"{g} {v:.3f}" for g, v in unadapted.get("test_by_anatomy", {}).items())
        + "; per severity band "
        + ", ".join(f"{g} {v:.3f}" for g, v in unadapted.get("test_by_severity", {}).items())
        + ".",
    ]
    if unadapted.get("test_by_class"):
        lines[-1] += " Per class: " + ", ".join(f"{g} {v:.3f}" for g, v in unadapted["test_by_class"].items()) + "."
    whole = [r for r in phases.get("reference", []) if r["variant"] == "whole pool labelled"]
    if whole:
        m, sd = mean_std([r["test_dice"] for r in whole])
        lines.append(f"Whole pool labelled (k={whole[0]['k']}, no PL): {m:.3f} ± {sd:.3f} (n={len(whole)}).")
    lines += ["", "## Test Dice per strategy and budget (mean ± std over seeds)", ""]
    lines += main_table(phases.get("main", []), budgets)
    lines += _per_class(phases.get("main", []))
    lines += _cost(phases.get("main", []), unadapted)
    lines += gate_section(phases.get("main", []), unadapted)
    lines += ["", f"## Worst {noun} per arm (mean Dice, and its change against the unadapted model)", ""]
    lines += worst_table(phases.get("main", []), budgets, unadapted.get(field, {}))
    lines += [
        "",
        "## Headline comparisons (paired over seeds; Holm correction over this family)",
        "",
        "| comparison | gain | std of gain | n | p (t) | p (t, Holm) | p (Wilcoxon) | p (Wilcoxon, Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in head["tests"]:
        lines.append(
            f"| {t['comparison']} | {t['gain']:+.3f} | {t['gain_std']:.3f} | {t['n']} | {_p(t['p_t'])} | "
            f"{_p(t['p_t_holm'])} | {_p(t['p_wilcoxon'])} | {_p(t['p_wilcoxon_holm'])} |"
        )
    lines += ["", "## Targets", ""]
    for t in head["targets"]["a"]:
        lines.append(
            f"- (a) k={t['k']}: asfda + PL {t['ours']:.3f} vs random (no PL) at {2 * t['k']} "
            f"{t['random_2k']:.3f}: margin {t['margin']:+.3f} -> {'met' if t['met'] else 'MISSED'}"
        )
    for t in head["targets"]["b"]:
        lines.append(
            f"- (b) k={t['k']}: gain over random + PL {t['gain']:+.3f} vs seed spread "
            f"{t['seed_spread']:.3f} -> {'met' if t['met'] else 'MISSED'}"
        )
    for t in head["targets"]["c"]:
        lines.append(
            f"- (c) k={t['k']}: worst {noun} {t['worst_group']}; smallest margin over the unadapted "
            f"model across {noun}s {t['min_margin_over_groups']:+.3f} -> {'met' if t['met'] else 'MISSED'}"
        )
    lines.append(
        f"- (c) over every arm: {len(head['violations_c_all_arms'])} arm/{noun} cells below the "
        "unadapted model (listed in headline.json)"
    )
    lines += _ablation(phases.get("ablation", []), meta)
    lines += _multiround(phases.get("multiround", []))
    lines += _diagnostics(meta.get("diagnostics", {}))
    lines += [
        "",
        "Files: `summary.csv` (every arm, per-anatomy and per-band Dice), `runs.csv` (every run), "
        "`headline.json`, `dice_vs_budget.png`, `cache/runs.jsonl` (resumable).",
        "",
    ]
    return "\n".join(lines)


def _per_class(rows: List[Dict]) -> List[str]:
    """A multi-class task: test Dice of each foreground class per arm (mean over seeds)."""
    classes = list(dict.fromkeys(c for r in rows for c in r.get("test_by_class", {})))
    if not classes:
        return []
    lines = [
        "",
        "## Test Dice per foreground class (mean ± std over seeds)",
        "",
        "| arm | k | n | " + " | ".join(classes) + " |",
        "|---|---|---|" + "---|" * len(classes),
    ]
    for (strategy, pseudo, k, _rounds), arm in sorted(group_arms(rows).items(), key=lambda kv: (kv[0][2], kv[0])):
        cells = []
        for c in classes:
            m, sd = mean_std([r["test_by_class"][c] for r in arm if c in r.get("test_by_class", {})])
            cells.append(f"{m:.3f} ± {sd:.3f}")
        lines.append(f"| {strategy}{' + PL' if pseudo else ''} | {k} | {len(arm)} | " + " | ".join(cells) + " |")
    return lines


def _cost(rows: List[Dict], unadapted: Dict) -> List[str]:
    """Annotation cost in labelled volumes and foreground voxels, the validation gate's verdicts, and (in a
    hospital-composed pool) the Dice of the rare protocol a clinician would notice."""
    if not rows:
        return []
    protocols = list(dict.fromkeys(p for r in rows for p in r.get("test_by_protocol", {})))
    base = unadapted.get("test_by_protocol", {})
    head = "| arm | k | n | volumes | foreground voxels | activated | DKD against | test Dice |"
    head += "".join(f" {p} (unadapted {base.get(p, float('nan')):.3f}) |" for p in protocols)
    lines = ["", "## Annotation cost and validation gate (mean over seeds)", "", head]
    lines.append("|---|---|---|---|---|---|---|---|" + "---|" * len(protocols))
    for (strategy, pseudo, k, _rounds), arm in sorted(group_arms(rows).items(), key=lambda kv: (kv[0][2], kv[0])):
        gates = [g["activated"] for r in arm for g in r.get("gate", [])]
        cells = [
            f"{mean_std([r.get('labelled_volumes', len(r['picks'])) for r in arm])[0]:.1f}",
            f"{mean_std([r.get('labelled_foreground_voxels', 0) for r in arm])[0]:.0f}",
            f"{sum(gates)}/{len(gates)}" if gates else "-",
            ", ".join(sorted({k for r in arm for k in r.get("knowledge_source", [])})) or "-",
            f"{mean_std([r['test_dice'] for r in arm])[0]:.3f}",
        ]
        for p in protocols:
            values = [r["test_by_protocol"][p] for r in arm if p in r.get("test_by_protocol", {})]
            m, sd = mean_std(values)
            cells.append(f"{m:.3f} ± {sd:.3f}")
        lines.append(f"| {strategy}{' + PL' if pseudo else ''} | {k} | {len(arm)} | " + " | ".join(cells) + " |")
    return lines


def _ablation(rows: List[Dict], meta) -> List[str]:
    if not rows:
        return []
    lines = [
        "",
        f"## Ablations (asfda + PL at k={meta['settings']['ablation_budget']}; chosen on the VALIDATION "
        "split, test shown for information only)",
        "",
        "| variant | val Dice | paired val gain vs default (± se) | test Dice | anatomies in picks |",
        "|---|---|---|---|---|",
    ]
    gains = {e["variant"]: e for e in meta.get("pick_log", []) if "val_gain" in e}
    chosen = {e["variant"] for e in meta.get("pick_log", []) if e.get("chosen")}
    by_variant: Dict[str, List[Dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, arm in by_variant.items():
        val, test = mean_std([r["val_dice"] for r in arm]), mean_std([r["test_dice"] for r in arm])
        cover = mean_std([len(r.get("picks_by_anatomy", {})) for r in arm])[0]
        g = gains.get(variant)
        gain = f"{g['val_gain']:+.4f} ± {g['se']:.4f}" if g else "-"
        mark = " **(picked)**" if variant in chosen else ""
        lines.append(
            f"| {variant}{mark} | {val[0]:.3f} ± {val[1]:.3f} | {gain} | {test[0]:.3f} ± {test[1]:.3f} | {cover:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Picked overrides of the reconstruction's original choices: `{meta.get('picked')}`; the code "
        f"defaults now {'match' if meta.get('code_defaults_match_pick') else 'do NOT match'} the pick."
    )
    return lines


def _multiround(rows: List[Dict]) -> List[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Multi-round (rank -> label -> adapt -> re-rank) against one-shot of the same total",
        "",
        "| strategy | rounds | k total | test Dice | val Dice |",
        "|---|---|---|---|---|",
    ]
    for (strategy, pseudo, k, rounds), arm in sorted(group_arms(rows).items()):
        test, val = mean_std([r["test_dice"] for r in arm]), mean_std([r["val_dice"] for r in arm])
        lines.append(
            f"| {strategy}{' + PL' if pseudo else ''} | {rounds} | {k} | {test[0]:.3f} ± {test[1]:.3f} "
            f"(n={len(arm)}) | {val[0]:.3f} ± {val[1]:.3f} |"
        )
    return lines


def _diagnostics(diag: Dict) -> List[str]:
    if not diag:
        return []
    lines = [
        "",
        f"## Diagnostics over {diag['pools']} pools",
        "",
        "| embedding | ARI of k-means clusters vs anatomy |",
        "|---|---|",
    ]
    for kind, v in diag["cluster_vs_anatomy_ari"].items():
        lines.append(f"| {kind} | {_p(v['mean'])} ± {_p(v['std'])} |")
    lines += ["", "| signal | Spearman with the source model's 1 - Dice |", "|---|---|"]
    for name, v in diag["spearman_with_source_error"].items():
        lines.append(f"| {name} | {_p(v['mean'])} ± {_p(v['std'])} (n={v['n']}) |")
    return lines
