"""Worker settings and the start-up checks that must run before anything binds a socket."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from asfda.core.errors import AsfdaError

DEFAULT_PORT = 8765
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
    token: Optional[str] = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    annotator_tokens: Dict[str, str] = field(default_factory=dict)  # token -> annotator name

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @classmethod
    def build(cls, datastore, host, port, device, token, max_upload_mb, annotators_file=None) -> WorkerSettings:
        from asfda.worker.annotators import load_annotator_tokens

        token = token if token is not None else os.environ.get("ASFDA_TOKEN")
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
                f"refusing to listen on {self.host} without a token: pass --token or set ASFDA_TOKEN, "
                "and --annotators FILE for one token per annotator (or bind 127.0.0.1)"
            )
        if self.max_upload_bytes <= 0:
            raise AsfdaError("--max-upload-mb must be positive")
        if not self.device.startswith(("cpu", "cuda")):
            raise AsfdaError(f"device {self.device!r} is not cpu or cuda[:N]")
        return self
