"""The PACS as a datastore's image source: `case_ids()` from the cached QIDO-RS listing, `image_path()`
materialising one series on first use (WADO-RS) into a size-limited local cache.

`image_path` runs in DataLoader worker processes and request threads at once: a per-series file lock
makes the first caller fetch and the others wait and reuse; the series appears by an atomic rename of
a staging folder, so no reader ever sees half a series.

The cache limit holds across processes and threads: a fetch reserves its series' bytes in dicomweb.db
under one cross-process cache lock (the lock every eviction takes), eviction counts the reservations of
fetches still in flight, and the reservation becomes the cached entry in one transaction when the series
lands (or is released when the fetch fails). Only then is anything written into the cache folder, so the
folder's size never exceeds the limit. Reservations of processes that died mid-fetch are dropped (and
their staging folders removed) when the next process opens the cache or reserves.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import List, Optional, Set

from filelock import FileLock, Timeout

from asfda.core.case_ids import validate_case_id
from asfda.core.errors import UnknownCase
from asfda.core.process_identity import ProcessIdentity
from asfda.data.dicomweb.config import DicomwebConfig
from asfda.data.dicomweb.errors import CacheFull, PacsUnavailable, SeriesGone
from asfda.data.dicomweb.index import DicomwebIndex
from asfda.io.dicom_series import sorted_slices

log = logging.getLogger("asfda.data.dicomweb")
CACHE_DIR = "dicomweb-cache"
FETCH_LOCK_WAIT_S = 600.0  # a concurrent fetch of the same series; longer than any sane WADO retrieval
CACHE_LOCK_WAIT_S = 120.0  # held only to count, evict and reserve: never across a network call
EVICT_GRACE_S = 5.0  # a series used this recently may still be being read: not evicted
_STUDY, _SERIES, _MODALITY, _DESCRIPTION, _INSTANCES = "0020000D", "0020000E", "00080060", "0008103E", "00201209"


def _value(item: dict, tag: str):
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def pacs_error(what: str, exc: Exception) -> PacsUnavailable:
    """A one-line cause for anything the HTTP stack raises (refused, timed out, 401/403, 5xx)."""
    import requests

    if isinstance(exc, requests.Timeout):
        cause = "timed out"
    elif isinstance(exc, requests.ConnectionError):
        cause = "cannot connect"
    elif isinstance(exc, requests.HTTPError) and exc.response is not None:
        cause = f"HTTP {exc.response.status_code}" + (
            " (check the credentials)" if exc.response.status_code in (401, 403) else ""
        )
    else:
        cause = f"{type(exc).__name__}: {str(exc)[:120]}"
    return PacsUnavailable(f"PACS {what}: {cause}")


def listing_fingerprint(case_id: str, listed: dict) -> str:
    """A series' identity as the QIDO listing gives it: an added or removed instance changes it."""
    return f"dicomweb|{listed['study_uid']}|{case_id}|{listed['instances']}"


class DicomwebSource:
    def __init__(self, root: Path, config: DicomwebConfig):
        self.root, self.config = Path(root), config
        self.cache_dir = self.root / CACHE_DIR
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / ".locks").mkdir(exist_ok=True)
        self.index = DicomwebIndex(self.root / "dicomweb.db")
        self._client = None
        try:  # at open: leftovers of a fetch killed mid-way; a busy lock means another process is at it
            with FileLock(self._cache_lock_path(), timeout=0):
                self._drop_dead_reservations()
        except Timeout:
            pass

    def __getstate__(self):  # DataLoader workers get a copy: the HTTP session is made again there
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = self.config.client()
        return self._client

    # -- listing --------------------------------------------------------------------------------

    def refresh(self) -> int:
        """List the PACS's series of the configured modalities (QIDO-RS, paged); returns how many."""
        rows, page = [], 1000
        try:
            for modality in self.config.modalities:
                offset = 0
                while True:
                    found = self.client.search_for_series(
                        search_filters={"Modality": modality},
                        fields=["SeriesDescription", "NumberOfSeriesRelatedInstances"],
                        limit=page,
                        offset=offset,
                    )
                    for item in found:
                        rows.append(
                            {
                                "case_id": validate_case_id(str(_value(item, _SERIES))),
                                "study_uid": str(_value(item, _STUDY)),
                                "modality": _value(item, _MODALITY) or modality,
                                "description": _value(item, _DESCRIPTION),
                                "instances": int(_value(item, _INSTANCES) or 0),
                            }
                        )
                    if len(found) < page:
                        break
                    offset += page
        except Exception as exc:
            if isinstance(exc, UnknownCase):
                raise
            raise pacs_error("listing (QIDO-RS)", exc) from None
        self.index.replace_listing(rows)
        return len(rows)

    def case_ids(self) -> List[str]:
        listed_at = self.index.listed_at()
        if listed_at is None or time.time() - listed_at > self.config.listing_max_age_s:
            try:
                with FileLock(str(self.cache_dir / ".locks" / "listing.lock"), timeout=0):
                    self.refresh()
            except Timeout:
                pass  # another process refreshes right now; its listing (or the previous one) serves
            except PacsUnavailable as exc:
                if listed_at is None:
                    raise
                log.warning("%s; using the listing of %.0f s ago", exc, time.time() - listed_at)
        return self.index.case_ids()

    # -- series cache ---------------------------------------------------------------------------

    def image_path(self, case_id: str) -> Path:
        """The local DICOM folder of a series, fetched on first use and again once the listing says the
        series changed (an instance added): a stale copy is never scored, served or referenced by a SEG."""
        target = self.cache_dir / validate_case_id(case_id)
        if target.is_dir() and self._cached_is_current(case_id):
            self.index.touch(case_id)
            return target
        with FileLock(str(self.cache_dir / ".locks" / f"{case_id}.lock"), timeout=FETCH_LOCK_WAIT_S):
            if target.is_dir() and not self._cached_is_current(case_id):  # checked again: another process may
                log.info("series %s changed in the PACS since it was fetched: fetching it again", case_id)
                self.evict(case_id)
            if not target.is_dir():  # another process may have fetched it while we waited
                self._fetch(case_id, target)
        self.index.touch(case_id)
        return target

    def _cached_is_current(self, case_id: str) -> bool:
        listed = self.index.series(case_id)
        if listed is None:  # gone from the listing: nothing to compare with (and nothing to fetch)
            return True
        return self.index.fetched_fingerprint(case_id) == listing_fingerprint(case_id, listed)

    def fingerprint(self, case_id: str) -> str:
        """From the listing, so a rank knows what it scored before without fetching the series again."""
        series = self.index.series(validate_case_id(case_id))
        if series is None:
            raise UnknownCase(f"series {case_id!r} is not in the PACS listing")
        return listing_fingerprint(case_id, series)

    def is_cached(self, case_id: str) -> bool:
        return (self.cache_dir / case_id).is_dir()

    def _fetch(self, case_id: str, target: Path) -> None:
        listed = self.index.series(case_id)
        if listed is None:
            raise UnknownCase(f"case {case_id!r} is not in the PACS listing (refresh the listing)")
        started = time.monotonic()
        try:
            datasets = self.client.retrieve_series(listed["study_uid"], case_id)
        except Exception as exc:
            import requests

            if isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code == 404:
                raise SeriesGone(f"series {case_id} is no longer in the PACS (deleted after listing)") from None
            raise pacs_error(f"fetching series {case_id} (WADO-RS)", exc) from None
        if not datasets:
            raise SeriesGone(f"series {case_id} is no longer in the PACS (deleted after listing)")
        # Encoded in memory first: the exact bytes the files will take are reserved before any is written.
        encoded = [_encode(ds) for ds in sorted_slices(datasets, case_id, expected=int(listed["instances"] or 0))]
        del datasets
        size, fingerprint = sum(len(data) for data in encoded), listing_fingerprint(case_id, listed)
        token = uuid.uuid4().hex
        staging = self.cache_dir / _staging_name(case_id, token)
        with FileLock(self._cache_lock_path(), timeout=CACHE_LOCK_WAIT_S):
            self._drop_dead_reservations()
            self._make_room(size, keep={case_id})
            self.index.reserve(token, case_id, size, fingerprint, ProcessIdentity.current())
        try:
            staging.mkdir()
            _write_files(staging, encoded)
            os.rename(staging, target)
            self.index.settle(token, case_id, size, fingerprint)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.index.release(token)  # nothing left to release once settled
        self.index.log_fetch(case_id, size, time.monotonic() - started)

    def _cache_lock_path(self) -> str:
        return str(self.cache_dir / ".locks" / "cache.lock")

    def _drop_dead_reservations(self) -> None:
        """Called under the cache lock. A fetch killed before its rename leaves a staging folder (removed);
        one killed between rename and settle leaves a complete series (adopted, so its bytes count)."""
        for row in self.index.dead_reservations():
            case_id = row["case_id"]
            shutil.rmtree(self.cache_dir / _staging_name(case_id, row["token"]), ignore_errors=True)
            if (self.cache_dir / case_id).is_dir() and not self.index.is_cached_row(case_id):
                self.index.settle(row["token"], case_id, row["bytes"], row["fingerprint"])
            self.index.release(row["token"])
            log.info("dropped the cache reservation of a fetch of %s whose process is gone", case_id)

    def pinned(self) -> Set[str]:
        """Series not to evict: a clinician holds a lease on them or their SEG is not yet written back."""
        from asfda.data.leases import active_leased_cases

        pending = {row["case_id"] for row in self.index.pending_segs()}
        return set(active_leased_cases(self.root / "asfda.db")) | pending

    def _make_room(self, size: int, keep: Set[str]) -> None:
        """Called under the cache lock: in-flight fetches' reservations count as used."""
        limit = int(self.config.cache_mb * 1024 * 1024)
        entries = self.index.cached()
        used = sum(e["bytes"] for e in entries) + self.index.reserved_bytes()
        if used + size <= limit:
            return
        if size > limit:
            raise CacheFull(f"series {next(iter(keep))} ({size / 2**20:.1f} MiB) is larger than the whole cache")
        pinned, now = self.pinned() | keep, time.time()
        for entry in entries:  # least recently used first
            if used + size <= limit:
                break
            if entry["case_id"] in pinned or now - entry["last_used"] < EVICT_GRACE_S:
                continue
            self.evict(entry["case_id"])
            used -= entry["bytes"]
        if used + size > limit:
            raise CacheFull(
                f"series cache full ({used / 2**20:.1f} of {limit / 2**20:.1f} MiB in series being labelled, "
                f"fetched or just used): cannot fetch {next(iter(keep))}; raise --dicomweb-cache-mb"
            )

    def evict(self, case_id: str) -> None:
        target = self.cache_dir / case_id
        doomed = self.cache_dir / f".{case_id}.{uuid.uuid4().hex[:8]}.evicting"
        try:
            os.rename(target, doomed)  # gone from view at once, then removed
        except FileNotFoundError:
            pass
        shutil.rmtree(doomed, ignore_errors=True)
        self.index.forget(case_id)
        log.info("evicted series %s from the cache", case_id)

    def source_slices(self, case_id: str) -> list:
        """The cached series' instances in slice order (to reference them from a SEG)."""
        import pydicom

        folder = self.image_path(case_id)
        return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def _encode(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _staging_name(case_id: str, token: str) -> str:
    return f".{case_id}.{token}.staging"


def _write_files(folder: Path, encoded: List[bytes]) -> None:
    for number, data in enumerate(encoded):
        (folder / f"{number:05d}.dcm").write_bytes(data)


def load_source(root: Path) -> Optional[DicomwebSource]:
    config = DicomwebConfig.load(root)
    return DicomwebSource(root, config) if config else None
