"""The command-line options that point a datastore at a PACS, shared by `asfda serve` and the engine commands."""

from __future__ import annotations

import argparse

from asfda.data.dicomweb.config import DEFAULT_CACHE_MB, DicomwebConfig


def add_dicomweb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dicomweb",
        metavar="URL",
        default=None,
        help="read images from this DICOMweb service (QIDO/WADO/STOW-RS root, e.g. http://pacs:8042/dicom-web); "
        "saved in the datastore. Credentials: env ASFDA_DICOMWEB_TOKEN or ASFDA_DICOMWEB_USER/_PASSWORD",
    )
    p.add_argument(
        "--dicomweb-credentials",
        metavar="FILE",
        default=None,
        help='JSON file {"token": ...} or {"username": ..., "password": ...} (its path is saved, not its content)',
    )
    p.add_argument(
        "--dicomweb-cache-mb", type=float, default=None, help=f"local series cache limit in MiB [{DEFAULT_CACHE_MB:g}]"
    )


def apply_dicomweb_args(args: argparse.Namespace) -> None:
    """Save the PACS settings into the datastore when --dicomweb is given (no-op otherwise)."""
    url = getattr(args, "dicomweb", None)
    if not url:
        return
    from pathlib import Path

    previous = DicomwebConfig.load(args.datastore) if (Path(args.datastore) / "dicomweb.json").exists() else None
    config = previous or DicomwebConfig(url=url)
    config.url = url
    if args.dicomweb_credentials:
        config.credentials_file = str(Path(args.dicomweb_credentials).resolve())
    if args.dicomweb_cache_mb is not None:
        config.cache_mb = float(args.dicomweb_cache_mb)
    Path(args.datastore).mkdir(parents=True, exist_ok=True)
    config.validate().credentials()  # a broken credentials file is reported now, not at the first fetch
    config.save(args.datastore)
