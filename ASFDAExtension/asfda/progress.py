"""Progress bars for long work on the console (tqdm), shaped as the engine's progress callbacks."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from tqdm import tqdm


def console_progress(label: str) -> Callable:
    """A callback `(phase, step, total[, metric])` or `(step, total)` that drives one tqdm bar per phase."""
    bars = {}

    def update(*args) -> None:
        if len(args) == 2:
            phase, step, total, metric = "", args[0], args[1], None
        else:
            phase, step, total = args[0], args[1], args[2]
            metric: Optional[float] = args[3] if len(args) > 3 else None
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(
                total=total, desc=f"{label} {phase}".strip(), leave=False, file=sys.stderr, disable=None
            )
        bar.n = step
        if metric is not None:
            bar.set_postfix(loss=f"{metric:.3f}", refresh=False)
        bar.refresh()
        if step >= total:
            bar.close()

    return update
