"""The `asfda` command line: rank, adapt, infer, model import, demo (serve and bench register here too)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from asfda.errors import AsfdaError

# Each module adds one sub-command with `add_parser(subparsers)`.
COMMAND_MODULES = ["asfda.cli_engine", "asfda.cli_demo", "asfda.cli_serve", "asfda.cli_bench"]


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


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from asfda.dicomweb.options import apply_dicomweb_args

        apply_dicomweb_args(args)  # --dicomweb URL: the datastore's images come from a PACS from now on
        return int(args.func(args) or 0)
    except (AsfdaError, FileNotFoundError, ValueError) as exc:
        print(
            f"asfda {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"asfda {args.command}: interrupted", file=sys.stderr)
        return 130
