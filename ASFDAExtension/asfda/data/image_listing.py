"""The listing of a datastore's images/ folder, made once per change of the folder rather than once per lookup.

Finding a case's image must refuse a case id that two files name (`case01.nii` beside `case01.NII.GZ`: the
suffix is matched without regard to case, so only a listing finds them). Listing 2,000 files on every
`image_path` call made each call O(cases). The listing is kept with the folder's identity (inode, mtime,
ctime in nanoseconds), which adding, removing or renaming an entry changes; a listing made less than
`RACY_WINDOW_S` after the folder's last change is not trusted, because a second change within the same
timestamp tick (a jiffy locally, up to seconds on a network file system) would leave the identity unchanged.
A case missing from a trusted listing is looked up again in a fresh one, so a newly added image is never
reported unknown.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from asfda.io.volumes import strip_volume_suffix, volume_suffix

__all__ = ["ImageListing", "RACY_WINDOW_S", "scan_images"]

RACY_WINDOW_S = 2.0

Entries = Dict[str, List[str]]


def scan_images(folder: Path) -> Entries:
    """case id -> the names of its image entries (files with a volume suffix, or DICOM folders), in name order."""
    entries: Entries = {}
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or volume_suffix(path):
            entries.setdefault(strip_volume_suffix(path), []).append(path.name)
    return entries


def _identity(folder: Path) -> Tuple[int, int, int, int]:
    stat = os.stat(folder)
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)


class ImageListing:
    """Cached `scan_images` of one folder; safe to share between threads (a stale read only re-lists)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._cached: Optional[Tuple[Tuple[int, int, int, int], Entries]] = None
        self.scans = 0  # how many times the folder was listed (for tests and the benchmark)

    def entries(self, fresh: bool = False) -> Entries:
        """The folder's entries, listed again when it changed since the cached listing (or when `fresh`)."""
        identity = _identity(self.folder)
        cached = self._cached
        if not fresh and cached is not None and cached[0] == identity:
            return cached[1]
        listed_at = time.time_ns()
        entries = scan_images(self.folder)
        self.scans += 1
        # Trusted later only if no further change can share this identity's timestamp.
        changed_ns = max(identity[2], identity[3])
        trusted = listed_at - changed_ns > RACY_WINDOW_S * 1e9 and _identity(self.folder) == identity
        self._cached = (identity, entries) if trusted else None
        return entries

    def names_of(self, case_id: str) -> List[str]:
        """The entries naming `case_id` (empty when none); a case the cached listing lacks is looked up afresh."""
        names = self.entries().get(case_id)
        if names is None:
            names = self.entries(fresh=True).get(case_id)
        return names or []
