"""The report's section on the validation gate: how often its verdict was right, and what it cost.

A kept-inactive version is scored as its parent (the clinician keeps using the parent); the runner also
records the kept version's own Dice, so the "advisory" columns show the arm as it would have scored had the
version been activated anyway. The fine-tuning is seeded per training, so the published version does not
depend on the gate's fold models: those columns are exact, not estimates.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from asfda.bench.stats import arm_name, group_arms, mean_std, paired_test


def _gated(row: Dict) -> bool:
    gates = row.get("gate") or []
    return int(row.get("rounds", 1)) == 1 and bool(gates) and "fold" in gates[-1].get("reason", "")


def _kept_inactive(row: Dict) -> bool:
    return not row["gate"][-1]["activated"]


def advisory_dice(row: Dict, split: str) -> Optional[float]:
    """The Dice of the version the round published, whether or not the gate let it become active."""
    if row.get("gate") and _kept_inactive(row):
        return row.get(f"inactive_version_{split}_dice")
    return row[f"{split}_dice"]


def gate_section(rows: List[Dict], unadapted: Dict) -> List[str]:
    gated = [r for r in rows if _gated(r)]
    if not gated or not unadapted:
        return []
    parent_val = unadapted["val_dice"]  # single-round runs: the parent is the source model
    lines = [
        "",
        "## The validation gate (single-round runs gated by k-fold; the parent is the unadapted model)",
        "",
        "Right and wrong verdicts are judged on the validation split (never on test). Advisory: the published "
        "version activated whatever the verdict (the product's default below 11 labels).",
        "",
        "| arm | k | gated | kept inactive | ...but better than the parent (val) | activated but worse (val) | "
        "val Dice enforced / advisory | test Dice enforced / advisory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missing = 0
    for (strategy, pseudo, k, _), arm in sorted(group_arms(gated).items(), key=lambda kv: (kv[0][2], kv[0])):
        kept = [r for r in arm if _kept_inactive(r)]
        wrong_rejections = [r for r in kept if (r.get("inactive_version_val_dice") or 0.0) > parent_val]
        wrong_acceptances = [r for r in arm if not _kept_inactive(r) and r["val_dice"] < parent_val]
        missing += sum(advisory_dice(r, "val") is None for r in kept)
        cells = [
            str(len(arm)),
            str(len(kept)),
            str(len(wrong_rejections)),
            str(len(wrong_acceptances)),
        ]
        for split in ("val", "test"):
            enforced = mean_std([r[f"{split}_dice"] for r in arm])[0]
            advisory = mean_std([advisory_dice(r, split) for r in arm])[0]
            cells.append(f"{enforced:.3f} / {advisory:.3f}")
        lines.append(f"| {arm_name(strategy, pseudo)} | {k} | " + " | ".join(cells) + " |")
    if missing:
        lines.append(f"\n{missing} kept-inactive runs predate the recording of the kept version's Dice: left out.")
    lines += _advisory_comparisons(rows)
    return lines


def _advisory_comparisons(rows: List[Dict]) -> List[str]:
    arms = group_arms([r for r in rows if int(r.get("rounds", 1)) == 1])
    lines = ["", "Paired over seeds with the gate advisory (test Dice; no Holm correction):", ""]
    for (strategy, pseudo, k, rounds), arm in sorted(arms.items(), key=lambda kv: kv[0][2]):
        if (strategy, pseudo) != ("asfda", True):
            continue
        ours = {r["seed"]: advisory_dice(r, "test") for r in arm}
        for other in (("random", True, k), ("balanced_entropy", True, k), ("foreground_random", True, k)):
            theirs = {r["seed"]: advisory_dice(r, "test") for r in arms.get((*other, rounds), [])}
            test = paired_test(
                {s: v for s, v in ours.items() if v is not None}, {s: v for s, v in theirs.items() if v is not None}
            )
            if test:
                lines.append(
                    f"- k={k}: asfda + PL vs {arm_name(other[0], other[1])} {test['gain']:+.3f} "
                    f"(std {test['gain_std']:.3f}, n={test['n']}, p_t {test['p_t']:.3g})"
                )
    return lines if len(lines) > 3 else []
