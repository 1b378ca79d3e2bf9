"""The `asfda` command line: one module per command group registers its sub-commands (COMMAND_MODULES)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from asfda.cli.common import apply_threads
from asfda.core.errors import AsfdaError

# Each module adds one sub-command with `add_parser(subparsers)`.
COMMAND_MODULES = [
    "asfda.cli.model",
    "asfda.cli.cases",
    "asfda.cli.engine",
    "asfda.cli.evaluate",
    "asfda.cli.report",
    "asfda.cli.demo",
    "asfda.cli.serve",
    "asfda.cli.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asfda",
        description="Adapt a medical segmentation model to your scans with few annotations: rank unlabeled "
        "volumes (DKD + ASD), label the top few, fine-tune on them plus reliable pseudo-labels.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """`model import`, `rank`: the words the user typed to pick the command."""
    action = next((v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)), None)
    return f"{args.command} {action}" if action else args.command


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    name = command_name(args)
    try:
        from asfda.data.dicomweb.options import apply_dicomweb_args

        apply_dicomweb_args(args)  # --dicomweb URL: the datastore's images come from a PACS from now on
        apply_threads(getattr(args, "threads", None))
        return int(args.func(args) or 0)
    except (AsfdaError, FileNotFoundError, ValueError) as exc:
        print(
            f"asfda {name}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"asfda {name}: interrupted", file=sys.stderr)
        return 130
