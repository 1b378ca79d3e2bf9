"""Dice against estimated annotator minutes on the cost axis: one panel per pool, each arm a point (mean ± std over
seeds), sparse and whole-volume forms told apart by their marker, the unadapted model as a line."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_dice_per_minute"]


def plot_dice_per_minute(target: Path, summary: Dict) -> None:
    """Write `target` (PNG) from a cost-axis summary (`report_cost.cost_axis_summary`)."""
    pools = summary["pools"]
    fig, axes = plt.subplots(1, len(pools), figsize=(6.5 * len(pools), 4.8), squeeze=False)
    strategies = sorted({arm["strategy"] for pool in pools.values() for arm in pool["arms"]})
    colours = dict(zip(strategies, plt.cm.tab10(np.linspace(0, 1, 10))))
    for ax, (mix, pool) in zip(axes[0], pools.items()):
        for arm in pool["arms"]:
            sparse = arm["slices_per_volume"] > 0
            ax.errorbar(
                arm["annotation_minutes"], arm["test_dice"], yerr=arm["test_dice_std"], capsize=3,
                color=colours[arm["strategy"]], marker="o" if sparse else "s", linestyle="none",
                markerfacecolor="none" if not arm["pseudo"] else None,
                label=f"{arm['arm']}, {arm['form']} (n={arm['n']})",
            )
        unadapted = pool.get("unadapted") or {}
        if "test_dice" in unadapted:
            ax.axhline(unadapted["test_dice"], color="grey", linestyle=":", label="unadapted")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("estimated annotator minutes (core/annotation_cost.py)")
        ax.set_ylabel("mean test Dice (± std over seeds)")
        ax.set_title(f"{mix} pool (circles: sparse slices, squares: whole volumes)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
