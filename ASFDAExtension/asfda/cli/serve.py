"""`asfda serve`: the local worker the Slicer module talks to (docs/worker.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asfda.cli.common import add_command
from asfda.data.dicomweb.options import add_dicomweb_args
from asfda.worker.settings import DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "serve",
        "run the worker: HTTP API over a datastore with one GPU job queue",
        "Serve a datastore to the ASFDA Slicer module. Binds 127.0.0.1 unless told otherwise. Every request "
        "but /health needs 'Authorization: Bearer <token>': the datastore's own DIR/worker-token (made on first "
        "start, mode 0600), an administrator token (--token-file or ASFDA_WORKER_TOKEN; required beyond "
        "loopback) or an annotator's (--annotators).",
    )
    p.add_argument("--datastore", type=Path, required=True, help="datastore folder (images/, labels/, models/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] [cuda when available, else cpu]")
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file (mode 0600) holding the administrator token [env ASFDA_WORKER_TOKEN_FILE, or the token "
        "itself in ASFDA_WORKER_TOKEN]",
    )
    p.add_argument("--token", default=None, help=argparse.SUPPRESS)  # deprecated: visible in process listings
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help="largest accepted request body in MiB",
    )
    p.add_argument(
        "--annotators",
        type=Path,
        default=None,
        help='JSON file {"name": "token"}: one bearer token per annotator [env ASFDA_ANNOTATORS_FILE]',
    )
    add_dicomweb_args(p)
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="score ranks on a Ray cluster: auto, local or ray://HOST:PORT; settings in ASFDA_RAY_* (docs/worker.md)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
    p.set_defaults(func=run)


TOKEN_DEPRECATED = (
    "asfda serve: warning: --token is deprecated and will be removed in the next release: a command line is "
    "visible to every user of this machine (process listings, shell history); use --token-file FILE or "
    "ASFDA_WORKER_TOKEN"
)


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from asfda.worker.settings import WorkerSettings
    from asfda.worker.tokens import datastore_token_path

    if args.token is not None:
        print(TOKEN_DEPRECATED, file=sys.stderr)

    def build(device: str) -> WorkerSettings:
        return WorkerSettings.build(
            args.datastore,
            args.host,
            args.port,
            device,
            args.token,
            args.max_upload_mb,
            args.annotators,
            token_file=args.token_file,
        ).check()

    # Checked before the heavy imports: a refused start must be quick and clear.
    settings = build(args.device or "cpu")
    if args.device is None:
        import torch

        if torch.cuda.is_available():
            settings = build("cuda")
    if args.ray:
        import os

        from asfda.scoring import ADDRESS_ENV, RayOptions

        RayOptions.from_env(args.ray).check_installed()
        os.environ[ADDRESS_ENV] = args.ray  # inherited by every job process; rank jobs score on Ray
    import uvicorn

    from asfda.worker.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    app = create_app(settings)
    print(f"asfda worker: serving {settings.datastore} on http://{settings.host}:{settings.port} ({settings.device})")
    print(f"asfda worker: administrator token in {datastore_token_path(settings.datastore)}")
    # Bounded graceful shutdown: an /infer request waiting on a long job must not hold the worker open.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
