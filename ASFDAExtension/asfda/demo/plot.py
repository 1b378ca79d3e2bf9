"""The demo's picture: how the pool was ranked, and what adaptation gave."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asfda.data.datastore import Datastore  # noqa: E402
from asfda.demo.evaluate import dice_per_subject  # noqa: E402
from asfda.query.strategies import Strategy  # noqa: E402


def plot_demo(store_root: Path, data, network, config, report, target: Path) -> None:
    scores = Datastore(store_root).state.scores(Strategy.ASFDA.value)
    true_dice = dice_per_subject(network, config, data.pool)
    fig, (ax_rank, ax_dice) = plt.subplots(1, 2, figsize=(12, 4.8))
    dkd = [s.dkd for s in scores]
    asd = [s.asd for s in scores]
    colour = [true_dice[s.case_id] for s in scores]
    points = ax_rank.scatter(dkd, asd, c=colour, cmap="RdYlGn", vmin=0, vmax=1, s=40)
    for s in scores:
        if s.selected:
            ax_rank.scatter([s.dkd], [s.asd], s=160, facecolors="none", edgecolors="black", linewidths=1.5)
            ax_rank.annotate(f"#{s.rank}", (s.dkd, s.asd), textcoords="offset points", xytext=(6, 4), fontsize=8)
    fig.colorbar(points, ax=ax_rank, label="source model Dice on the volume (hidden truth)")
    ax_rank.set_xlabel("DKD knowledge gap (KL to stored BN statistics)")
    ax_rank.set_ylabel("ASD (foreground entropy)")
    ax_rank.set_title(f"Target pool ranking; circled: the k={report.k} ASFDA picks")

    names = ["source model"] + [arm.name for arm in report.arms]
    values = [report.dice_before] + [arm.dice for arm in report.arms]
    bars = ax_dice.bar(range(len(names)), values, color=["#999999", "#2b8cbe", "#fdae6b", "#fee6ce"][: len(names)])
    for bar, value in zip(bars, values):
        ax_dice.text(bar.get_x() + bar.get_width() / 2, value + 0.005, f"{value:.3f}", ha="center", fontsize=9)
    ax_dice.set_xticks(range(len(names)), [n.replace(" + ", "\n+ ").replace(", ", ",\n") for n in names], fontsize=8)
    low = max(0.0, min(values) - 0.1)
    ax_dice.set_ylim(low, 1.0)
    ax_dice.set_ylabel("mean Dice on the shifted target test set")
    ax_dice.set_title(f"Adaptation with k={report.k} labels (seed {report.seed})")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
