"""An identity of an image's bytes that a copy with a preserved modification time cannot fake.

Size and mtime alone are what `cp -p`, a backup restore or an archive unpack reproduce exactly, so each
file also contributes its inode and status-change time (set by the kernel on every write or rename; no
tool can set it back) and a hash of its first and last bytes with its size. The partial hash is what
catches a replaced file where the other fields are not trustworthy (Windows reports the creation time as
st_ctime; some network file systems reuse inodes). Reading the whole volume would cost minutes on every
rank of a large pool, so only the ends are read: a different scan differs in its header (gzip stream,
DICOM UIDs) or its voxels at either end.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, List

# One file: its first and last MiB. A DICOM folder has hundreds of small files whose header (with the
# instance's own UID) lies in the first KiB: 8 KiB from each end keeps a 300-slice series to ~5 MiB read.
FILE_END_BYTES = 1 << 20
MEMBER_END_BYTES = 8 << 10

__all__ = ["file_fingerprint", "partial_hash", "stat_identity"]


def stat_identity(path: Path) -> str:
    """Device, inode, size, mtime and ctime (ns) of one file: changes on any write or replace, `cp -p` included
    (ctime cannot be set back), without reading it; for files this process wrote and recorded itself."""
    stat = os.stat(path)
    return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


def partial_hash(path: Path, end_bytes: int = FILE_END_BYTES) -> str:
    """sha256 of the size, the first `end_bytes` and the last `end_bytes` of a file (all of a small one)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"{size}|".encode())
        digest.update(handle.read(end_bytes))
        if size > 2 * end_bytes:
            handle.seek(size - end_bytes)
        digest.update(handle.read(end_bytes))
    return digest.hexdigest()


def _member_line(file: Path, name: str, end_bytes: int) -> str:
    stat = file.stat()
    return (
        f"{name}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}|{partial_hash(file, end_bytes)}\n"
    )


def _folder_members(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _digest(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
    return digest.hexdigest()[:32]


def file_fingerprint(path: Path) -> str:
    """Changes whenever a file's (or a DICOM folder's member files') bytes may have changed."""
    path = Path(path)
    if path.is_dir():
        members = _folder_members(path)
        return _digest(_member_line(f, f.relative_to(path).as_posix(), MEMBER_END_BYTES) for f in members)
    return _digest([_member_line(path, path.name, FILE_END_BYTES)])
