"""Progress for long work, shaped as the engine's progress callbacks.

On a terminal: one tqdm bar per phase. Otherwise (a batch job's log, a pipe): plain lines on stderr, at the
start of each phase, every `interval_s` seconds (env ASFDA_PROGRESS_SECONDS, default 30) and at its end, so a
log shows the job is alive and how far it got.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, TextIO

from tqdm import tqdm

DEFAULT_INTERVAL_S = 30.0


def _parse(args) -> tuple:
    if len(args) == 2:
        return "", args[0], args[1], None
    return args[0], args[1], args[2], (args[3] if len(args) > 3 else None)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def log_progress(
    label: str, interval_s: Optional[float] = None, stream: Optional[TextIO] = None, clock=time.monotonic
) -> Callable:
    """A callback `(phase, step, total[, metric])` or `(step, total)` that writes periodic one-line reports."""
    if interval_s is None:
        interval_s = float(os.environ.get("ASFDA_PROGRESS_SECONDS", DEFAULT_INTERVAL_S))
    phases = {}  # phase -> (started, last report time)

    def update(*args) -> None:
        phase, step, total, metric = _parse(args)
        now = clock()
        if phase not in phases:
            phases[phase] = (now, None)
        started, last = phases[phase]
        done = step >= total
        if not done and last is not None and now - last < interval_s:
            return
        phases[phase] = (started, now)
        elapsed = now - started
        line = f"asfda {label}: {phase + ' ' if phase else ''}{step}/{total} ({100.0 * step / max(total, 1):.0f}%)"
        line += f", {_duration(elapsed)} elapsed"
        if 0 < step < total:
            line += f", about {_duration(elapsed / step * (total - step))} left"
        if metric is not None:
            line += f", loss {metric:.4f}"
        print(line, file=stream or sys.stderr, flush=True)

    return update


def tqdm_progress(label: str) -> Callable:
    bars = {}

    def update(*args) -> None:
        phase, step, total, metric = _parse(args)
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=f"{label} {phase}".strip(), leave=False, file=sys.stderr)
        bar.n = step
        if metric is not None:
            bar.set_postfix(loss=f"{metric:.3f}", refresh=False)
        bar.refresh()
        if step >= total:
            bar.close()

    return update


def console_progress(label: str) -> Callable:
    """Bars on a terminal, periodic log lines anywhere else."""
    return tqdm_progress(label) if sys.stderr.isatty() else log_progress(label)
