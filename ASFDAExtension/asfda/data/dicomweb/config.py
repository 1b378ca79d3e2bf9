"""Where the PACS is and how to log in. Saved in the datastore (dicomweb.json) so every process that
opens the datastore (CLI, worker, job children, DataLoader workers) reads the same PACS.

Secrets never go on the command line or into dicomweb.json: they come from the environment
(ASFDA_DICOMWEB_TOKEN, or ASFDA_DICOMWEB_USER + ASFDA_DICOMWEB_PASSWORD) or from a credentials file
(JSON {"token": ...} or {"username": ..., "password": ...}) whose *path* is saved.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from asfda.core.atomic import atomic_write_bytes
from asfda.core.errors import ConfigError

CONFIG_NAME = "dicomweb.json"
DEFAULT_CACHE_MB = 4096.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_LISTING_MAX_AGE_S = 300.0


@dataclass
class DicomwebConfig:
    url: str
    cache_mb: float = DEFAULT_CACHE_MB
    timeout_s: float = DEFAULT_TIMEOUT_S
    listing_max_age_s: float = DEFAULT_LISTING_MAX_AGE_S
    modalities: List[str] = field(default_factory=lambda: ["CT", "MR"])
    credentials_file: Optional[str] = None
    write_seg: bool = True

    def validate(self) -> DicomwebConfig:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"DICOMweb URL {self.url!r} must look like http(s)://host[:port]/path")
        if parsed.username or parsed.password:
            raise ConfigError(
                "put no credentials in the DICOMweb URL: use ASFDA_DICOMWEB_TOKEN, ASFDA_DICOMWEB_USER + "
                "ASFDA_DICOMWEB_PASSWORD, or --dicomweb-credentials FILE"
            )
        if self.cache_mb <= 0 or self.timeout_s <= 0:
            raise ConfigError("--dicomweb-cache-mb and the DICOMweb timeout must be positive")
        self.url = self.url.rstrip("/")
        return self

    def save(self, root: Path) -> None:
        atomic_write_bytes(Path(root) / CONFIG_NAME, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, root: Path) -> Optional[DicomwebConfig]:
        path = Path(root) / CONFIG_NAME
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text())).validate()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a valid DICOMweb configuration ({exc})") from None

    def credentials(self) -> Dict[str, str]:
        """{"token": ...} or {"username": ..., "password": ...} or {} (anonymous)."""
        if self.credentials_file:
            path = Path(self.credentials_file)
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"DICOMweb credentials file {path}: cannot read JSON ({type(exc).__name__})"
                ) from None
            if not isinstance(found, dict) or not (found.get("token") or found.get("username")):
                raise ConfigError(
                    f'DICOMweb credentials file {path}: expected {{"token"}} or {{"username", "password"}}'
                )
            return {k: str(v) for k, v in found.items() if k in ("token", "username", "password")}
        if os.environ.get("ASFDA_DICOMWEB_TOKEN"):
            return {"token": os.environ["ASFDA_DICOMWEB_TOKEN"]}
        if os.environ.get("ASFDA_DICOMWEB_USER"):
            return {
                "username": os.environ["ASFDA_DICOMWEB_USER"],
                "password": os.environ.get("ASFDA_DICOMWEB_PASSWORD", ""),
            }
        return {}

    def client(self):
        """A dicomweb-client over a requests session with our credentials, timeout and retry policy."""
        import requests
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        secret = self.credentials()
        headers = {}
        if "token" in secret:
            headers["Authorization"] = f"Bearer {secret['token']}"
        elif "username" in secret:
            session.auth = (secret["username"], secret.get("password", ""))
        client = DICOMwebClient(self.url, session=session, headers=headers, timeout=self.timeout_s)
        # Busy PACS answers (429/503) are retried a little; a dead one fails at once (connection refused).
        client.set_http_retry_params(
            retry=True, max_attempts=3, wait_exponential_multiplier=200, retriable_error_codes=(429, 502, 503, 504)
        )
        return client
