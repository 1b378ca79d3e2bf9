"""A model version's content id: sha256 over every file of its folder (weights, config, bundle configs,
feature prior, reference statistics), meta.json aside.

The version name says which folder, not what is in it: a folder deleted and published again under the same
name, or a config edited in place (the worker reloads edited configs), holds other content under the old
name. Anything keyed by "this model" (the signal cache, stored predictions) uses the content id instead.

Hashing a SwinUNETR's weights takes a fraction of a second; to do it once, each file's full hash is kept
with the file's fingerprint (asfda.core.file_identity) in this process and in meta.json at publish, and
reused only while the fingerprint still matches.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Dict, List, Tuple

from asfda.core.checksums import sha256_file
from asfda.core.file_identity import file_fingerprint

META_FILE = "meta.json"
# {relative path: {"fingerprint": ..., "sha256": ...}}: what meta.json records next to the content id.
FileRecords = Dict[str, Dict[str, str]]

_lock = threading.Lock()
_known: Dict[Tuple[str, str], str] = {}  # (absolute path, fingerprint) -> full sha256

__all__ = ["FileRecords", "folder_content_id"]


def _content_files(folder: Path) -> List[Path]:
    # Everything a load could read; staging and temp files of an atomic write are not content.
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != META_FILE and not p.name.startswith(".")
    )


def _file_sha(file: Path, relative: str, recorded: FileRecords) -> Tuple[str, str]:
    fingerprint = file_fingerprint(file)
    with _lock:
        sha = _known.get((str(file), fingerprint))
    if sha is None:
        previous = recorded.get(relative) or {}
        sha = previous.get("sha256") if previous.get("fingerprint") == fingerprint else None
    if sha is None:
        sha = sha256_file(file)
    with _lock:
        _known[(str(file), fingerprint)] = sha
    return fingerprint, sha


def folder_content_id(folder: Path, recorded: FileRecords) -> Tuple[str, FileRecords]:
    """(content id of a version folder, the per-file records to keep with it); `recorded`: meta.json's."""
    folder = Path(folder)
    digest = hashlib.sha256()
    records: FileRecords = {}
    for file in _content_files(folder):
        relative = file.relative_to(folder).as_posix()
        fingerprint, sha = _file_sha(file, relative, recorded)
        records[relative] = {"fingerprint": fingerprint, "sha256": sha}
        digest.update(f"{relative}|{sha}\n".encode())
    return digest.hexdigest(), records
