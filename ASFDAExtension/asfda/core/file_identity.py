"""A cheap identity of an image's bytes: size and modification time of every file, never a read of the data.

Every write into a datastore replaces files (temp file + rename), which changes the modification time,
so a replaced image never matches its old fingerprint; reading 500 volumes to hash them would cost
minutes on every rank.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_fingerprint(path: Path) -> str:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha1()
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:20]
