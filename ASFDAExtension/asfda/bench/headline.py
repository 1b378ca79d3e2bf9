"""The headline comparisons (Holm-corrected as one family) and the three targets of issue 6."""

from __future__ import annotations

from typing import Dict, List

from asfda.bench.plan import HARD_BASELINES
from asfda.bench.stats import group_arms, holm, mean_std, one_sample_test, paired_test, subgroup_means, worst_subgroup


def _by_seed(rows: List[Dict], field: str = "test_dice") -> Dict[int, float]:
    return {r["seed"]: r[field] for r in rows}


def headline(main_rows: List[Dict], unadapted: Dict, field: str = "test_by_anatomy", noun: str = "anatomy") -> Dict:
    """`field` / `noun`: the subgroups of target (c) (anatomies; severity bands for a single-anatomy task)."""
    arms = group_arms(main_rows)
    budgets = sorted({k for (_, _, k, _) in arms})
    base_groups = unadapted.get(field, {})
    tests, targets = [], {"a": [], "b": [], "c": []}
    for k in budgets:
        ours = arms.get(("asfda", True, k, 1))
        if not ours:
            continue
        control = arms.get(("random", True, k, 1))
        if control:
            result = paired_test(_by_seed(ours), _by_seed(control))
            if result:
                tests.append({"comparison": f"asfda + PL vs random + PL, k={k}", **result})
                spread = mean_std([r["test_dice"] for r in control])[1]
                targets["b"].append(
                    {"k": k, "gain": result["gain"], "seed_spread": spread, "met": result["gain"] > spread}
                )
        for baseline in HARD_BASELINES:
            other = arms.get((baseline, True, k, 1))
            result = paired_test(_by_seed(ours), _by_seed(other)) if other else None
            if result:
                tests.append({"comparison": f"asfda + PL vs {baseline} + PL, k={k}", **result})
        double = arms.get(("random", False, 2 * k, 1))
        if double:
            result = paired_test(_by_seed(ours), _by_seed(double))
            if result:
                tests.append({"comparison": f"asfda + PL at k={k} vs random (no PL) at {2 * k}", **result})
            ours_mean, double_mean = (
                mean_std([r["test_dice"] for r in ours])[0],
                mean_std([r["test_dice"] for r in double])[0],
            )
            targets["a"].append(
                {
                    "k": k,
                    "ours": ours_mean,
                    "random_2k": double_mean,
                    "margin": ours_mean - double_mean,
                    "met": ours_mean >= double_mean,
                }
            )
        group, _ = worst_subgroup(ours, field)
        if group is not None and group in base_groups:
            per_seed = {r["seed"]: r[field][group] for r in ours if group in r[field]}
            result = one_sample_test(per_seed, base_groups[group])
            if result:
                tests.append({"comparison": f"asfda + PL worst {noun} ({group}) vs unadapted, k={k}", **result})
            means = subgroup_means(ours, field)
            margin = min(means[g] - base_groups[g] for g in means if g in base_groups)
            targets["c"].append({"k": k, "worst_group": group, "min_margin_over_groups": margin, "met": margin >= 0})
    adjusted = holm([t["p_t"] for t in tests])
    adjusted_w = holm([t["p_wilcoxon"] for t in tests])
    for test, p, pw in zip(tests, adjusted, adjusted_w):
        test["p_t_holm"], test["p_wilcoxon_holm"] = p, pw
    return {"tests": tests, "targets": targets, "violations_c_all_arms": _all_arm_violations(arms, base_groups, field)}


def _all_arm_violations(arms, base_groups, field: str = "test_by_anatomy") -> List[Dict]:
    """Target (c) over every arm: subgroups whose mean Dice fell below the unadapted model's."""
    found = []
    for (strategy, pseudo, k, _rounds), rows in sorted(arms.items()):
        for group, value in subgroup_means(rows, field).items():
            if group in base_groups and value < base_groups[group]:
                found.append(
                    {
                        "strategy": strategy,
                        "pseudo": pseudo,
                        "k": k,
                        "group": group,
                        "dice": value,
                        "unadapted": base_groups[group],
                    }
                )
    return found
