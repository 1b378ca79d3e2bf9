"""The command line face: `asfda ...` (entry point `asfda.cli:main`)."""

from asfda.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
