"""The picture of `asfda report --plot`: Dice on the reference labels against cumulative annotator minutes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, never a window: the command also runs on headless servers
import matplotlib.pyplot as plt  # noqa: E402

from asfda.loop.report import EffortReport  # noqa: E402


def plot_dice_per_minute(report: EffortReport, target: Path) -> int:
    """Write the curve to `target` (format from its suffix); the number of points drawn."""
    points = report.curve()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    if points:
        minutes, dice = zip(*points)
        ax.plot(minutes, dice, marker="o", color="#2b8cbe")
        labels = [report.baseline or "start"] + [r.version for r in report.rounds if r.cumulative_minutes is not None]
        for x, y, name in zip(minutes, dice, labels):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    else:
        ax.text(0.5, 0.5, "no round with recorded minutes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("cumulative annotator minutes (active editing time)")
    ax.set_ylabel("mean Dice on the reference labels")
    ax.set_title("Dice against annotation effort")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return len(points)
