"""Dice against the annotation budget, with the spread over seeds, overall and on the worst anatomy."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asfda.bench.stats import arm_name, group_arms, mean_std, worst_subgroup  # noqa: E402


def plot_budget(
    target: Path, rows: List[Dict], unadapted: Dict, field: str = "test_by_anatomy", noun: str = "anatomy"
) -> None:
    arms = group_arms(rows)
    strategies = list(dict.fromkeys(s for (s, _, _, _) in arms))
    colours = dict(zip(strategies, plt.cm.tab10(np.linspace(0, 1, 10))))
    fig, (ax, ax_worst) = plt.subplots(1, 2, figsize=(13, 5))
    for s_index, strategy in enumerate(strategies):
        for pseudo in (True, False):
            ks = sorted(k for (s, p, k, r) in arms if s == strategy and p == pseudo and r == 1)
            if not ks:
                continue
            stats = [mean_std([r["test_dice"] for r in arms[(strategy, pseudo, k, 1)]]) for k in ks]
            worst = [worst_subgroup(arms[(strategy, pseudo, k, 1)], field)[1] for k in ks]
            x = np.array(ks, dtype=float) * (1 + 0.02 * (s_index - len(strategies) / 2))  # spread markers apart
            style = dict(color=colours[strategy], linestyle="-" if pseudo else "--", marker="o" if pseudo else "x")
            ax.errorbar(
                x,
                [m for m, _ in stats],
                yerr=[s for _, s in stats],
                capsize=3,
                label=arm_name(strategy, pseudo),
                **style,
            )
            ax_worst.plot(x, worst, **style)
    if unadapted:
        ax.axhline(unadapted["test_dice"], color="grey", linestyle=":", label="unadapted")
        base = unadapted.get(field, {})
        if base:
            ax_worst.axhline(min(base.values()), color="grey", linestyle=":", label="unadapted (its worst)")
    for a in (ax, ax_worst):
        a.set_xscale("log", base=2)
        a.set_xlabel("annotation budget k (labelled volumes)")
    ax.set_ylabel("mean Dice on the target test set (± std over seeds)")
    ax.set_title("Label efficiency: solid = with selective pseudo-labels")
    ax_worst.set_ylabel(f"Dice on the worst {noun} (mean over seeds)")
    ax_worst.set_title("Worst subgroup")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
