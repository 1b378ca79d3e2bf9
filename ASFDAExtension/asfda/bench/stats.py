"""Aggregation over seeds and paired significance tests with Holm correction."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats


def arm_key(row: Dict) -> tuple:
    return (row["strategy"], bool(row["pseudo"]), int(row["k"]), int(row.get("rounds", 1)))


def arm_name(strategy: str, pseudo: bool) -> str:
    return f"{strategy}{' + PL' if pseudo else ''}"


def group_arms(rows: Sequence[Dict]) -> Dict[tuple, List[Dict]]:
    arms: Dict[tuple, List[Dict]] = {}
    for row in rows:
        arms.setdefault(arm_key(row), []).append(row)
    for key in arms:
        arms[key].sort(key=lambda r: r["seed"])
    return arms


def mean_std(values: Sequence[float]) -> tuple:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def subgroup_means(rows: Sequence[Dict], field: str = "test_by_anatomy") -> Dict[str, float]:
    groups: Dict[str, List[float]] = {}
    for row in rows:
        for group, value in row.get(field, {}).items():
            groups.setdefault(group, []).append(value)
    return {g: float(np.mean(v)) for g, v in sorted(groups.items())}


def worst_subgroup(rows: Sequence[Dict], field: str = "test_by_anatomy") -> tuple:
    means = subgroup_means(rows, field)
    if not means:
        return None, float("nan")
    name = min(means, key=means.get)
    return name, means[name]


def _test_differences(diff: np.ndarray) -> Dict:
    """Mean gain, its spread, t-test and Wilcoxon signed-rank p-values of differences against zero."""
    t_p = float(stats.ttest_1samp(diff, 0.0).pvalue) if diff.std() > 0 else 1.0
    try:
        w_p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    except ValueError:
        w_p = float("nan")
    return {
        "gain": float(diff.mean()),
        "gain_std": float(diff.std(ddof=1)),
        "n": len(diff),
        "p_t": t_p,
        "p_wilcoxon": w_p,
    }


def paired_test(a: Dict[int, float], b: Dict[int, float]) -> Optional[Dict]:
    """a - b over the seeds both have (a paired t-test is the one-sample test of the differences)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    return _test_differences(np.array([a[s] - b[s] for s in seeds]))


def one_sample_test(values: Dict[int, float], reference: float) -> Optional[Dict]:
    if len(values) < 2:
        return None
    return _test_differences(np.array([v - reference for v in values.values()]))


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(len(p), np.nan)
    order = valid[np.argsort(p[valid])]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
