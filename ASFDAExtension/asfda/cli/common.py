"""Pieces every `asfda` sub-command shares: help with defaults, datastore/device/threads options, JSON output."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from asfda.data.writer_lock import lock_datastore


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the empty ones (None, False) that would only add noise."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def add_command(subparsers, name: str, help: str, description: str = "", epilog: str = "") -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help, description=description or help, epilog=epilog or None, formatter_class=HelpFormatter
    )


def add_datastore(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--datastore", type=Path, required=True, help="datastore folder (images/, labels/, models/)")
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when torch sees one, else cpu), cpu or cuda[:N]")
    from asfda.data.dicomweb.options import add_dicomweb_args

    add_dicomweb_args(p)  # the same datastore may take its images from a PACS


def writes_datastore(command: str, func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`func` run under the datastore's writer lock, the one a running worker holds: while a worker (or another
    writing command) has the datastore, the command is refused in one line naming that process."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        root = Path(args.datastore)
        if not root.is_dir():  # the command itself says it is missing (or, model import, creates it)
            return func(args)
        with lock_datastore(root, command):
            return func(args)

    return run


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (intra- and inter-op); default: torch's choice, all cores",
    )


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout instead of a table")


def apply_threads(threads) -> None:
    """Limit torch's CPU threads for this process (a shared cluster node, a job's core allocation)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            # Settable once per process, before any parallel work; the in-process second call keeps the first.
            pass


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def print_json(value: Any) -> None:
    json.dump(_clean(value), sys.stdout, indent=2)
    sys.stdout.write("\n")


def fmt(value, spec: str, width: int) -> str:
    return format(value, spec) if value is not None else "-".rjust(width)
