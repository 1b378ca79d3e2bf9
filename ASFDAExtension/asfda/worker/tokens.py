"""Worker tokens: the datastore's own administrator token (DIR/worker-token) and tokens read from a file.

The worker writes a random token into the datastore on its first start (mode 0600, one line of
URL-safe text), so even a loopback worker answers no one who cannot read the datastore: a web page in
the clinician's browser cannot, the Slicer module and the `asfda` commands on the same machine can.
Tokens never come from a command line (process listings and shell history show those).
"""

from __future__ import annotations

import os
import secrets
import stat
import uuid
from pathlib import Path

from asfda.core.errors import ConfigError

DATASTORE_TOKEN_NAME = "worker-token"
TOKEN_BYTES = 32  # 256 random bits, 43 URL-safe characters
MIN_TOKEN_CHARS = 16


def datastore_token_path(root: Path) -> Path:
    return Path(root) / DATASTORE_TOKEN_NAME


def _checked(text: str, where: str) -> str:
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(f"{where}: a token is one line of at least {MIN_TOKEN_CHARS} non-blank characters")
    return token


def read_token_file(path: Path, private: bool = True) -> str:
    """The token in `path` (its first line, stripped).

    Args:
        path: a file holding the token.
        private: refuse a file that other users may read (POSIX), as ssh does for its keys.

    Returns:
        The token text.
    """
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"token file {path}: cannot read it ({type(exc).__name__})") from None
    if private and os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"token file {path}: other users may read it; run `chmod 600 {path}`")
    lines = text.splitlines()
    return _checked(lines[0] if lines else "", f"token file {path}")


def ensure_datastore_token(root: Path) -> str:
    """The datastore's administrator token, created (mode 0600) when missing.

    Args:
        root: the datastore folder.

    Returns:
        The token text; the same on every start until someone deletes the file (which rotates it).
    """
    path = datastore_token_path(root)
    if not path.exists():
        # Written whole into a private temp file, then linked: a reader never sees half a token, and two
        # workers starting at once agree on one (the second link fails and that worker reads the first).
        temp = path.with_name(f".{DATASTORE_TOKEN_NAME}.{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                pass
        finally:
            temp.unlink(missing_ok=True)
    if os.name == "posix":
        os.chmod(path, 0o600)  # a copied datastore may have lost the mode; the token is a secret
    return read_token_file(path)
