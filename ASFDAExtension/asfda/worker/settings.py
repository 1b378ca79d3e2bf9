"""Worker settings and the start-up checks that must run before anything binds a socket."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Optional

from asfda.core.errors import AsfdaError
from asfda.worker.origin import loopback_hosts
from asfda.worker.tokens import read_token_file

DEFAULT_PORT = 8765
TOKEN_ENVS = ("ASFDA_WORKER_TOKEN", "ASFDA_TOKEN")  # the second: the older name, still read
TOKEN_FILE_ENV = "ASFDA_WORKER_TOKEN_FILE"
DEFAULT_MAX_HEAVY_REQUESTS = 2  # each may hold one volume (a 512x512x600 int16 CT is 300 MiB)
DEFAULT_MAX_UPLOAD_MB = 512  # an uncompressed 512^3 uint8 labelmap is 128 MiB; leave room for int16 and NRRD


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


@dataclass(frozen=True)
class WorkerSettings:
    datastore: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    device: str = "cpu"
    token: Optional[str] = None  # an administrator token chosen by whoever started the worker
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    annotator_tokens: Dict[str, str] = field(default_factory=dict)  # token -> annotator name
    max_heavy_requests: int = DEFAULT_MAX_HEAVY_REQUESTS  # label uploads and image downloads at once

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def allowed_hosts(self) -> Optional[FrozenSet[str]]:
        """The Host header values a loopback worker answers; None (any) beyond loopback."""
        return loopback_hosts(self.port) if self.loopback else None

    @classmethod
    def build(
        cls, datastore, host, port, device, token, max_upload_mb, annotators_file=None, token_file=None
    ) -> WorkerSettings:
        """Settings from the command's arguments and the environment.

        Args:
            token: an administrator token given directly (only the deprecated `--token` passes one).
            token_file: a private file holding the administrator token (`--token-file`,
                env ASFDA_WORKER_TOKEN_FILE); else env ASFDA_WORKER_TOKEN (or the older ASFDA_TOKEN).
            annotators_file: JSON {"name": "token"} (`--annotators`, env ASFDA_ANNOTATORS_FILE).

        Returns:
            The settings, not yet checked (`check`).
        """
        from asfda.worker.annotators import load_annotator_tokens

        token_file = token_file or os.environ.get(TOKEN_FILE_ENV)
        if token is None and token_file:
            token = read_token_file(Path(token_file))
        if token is None:
            token = next((os.environ[name] for name in TOKEN_ENVS if os.environ.get(name)), None)
        annotators_file = annotators_file or os.environ.get("ASFDA_ANNOTATORS_FILE")
        return cls(
            datastore=Path(datastore).resolve(),
            host=host,
            port=int(port),
            device=device,
            token=(token.strip() or None) if token else None,
            max_upload_bytes=int(float(max_upload_mb) * 1024 * 1024),
            annotator_tokens=load_annotator_tokens(Path(annotators_file)) if annotators_file else {},
        )

    def check(self) -> WorkerSettings:
        # Labels and images are patient data: never expose them beyond this machine without a token.
        if not self.loopback and not self.token and not self.annotator_tokens:
            raise AsfdaError(
                f"refusing to listen on {self.host} without a token: pass --token-file FILE or set ASFDA_WORKER_TOKEN, "
                "and --annotators FILE for one token per annotator (or bind 127.0.0.1)"
            )
        if self.max_heavy_requests < 1:
            raise AsfdaError("max_heavy_requests must be at least 1")
        if self.max_upload_bytes <= 0:
            raise AsfdaError("--max-upload-mb must be positive")
        if not self.device.startswith(("cpu", "cuda")):
            raise AsfdaError(f"device {self.device!r} is not cpu or cuda[:N]")
        return self
