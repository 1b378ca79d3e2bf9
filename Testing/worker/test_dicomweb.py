"""A DICOMweb datastore against a real Orthanc: listing, lazy fetch, ranking, SEG write-back, faults."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pydicom
import pytest
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.dicomweb import source as source_module
from asfda.data.dicomweb.config import DicomwebConfig
from asfda.data.dicomweb.errors import BadSeries, CacheFull, PacsUnavailable, SeriesGone
from asfda.data.dicomweb.seg import read_seg
from asfda.data.dicomweb.writeback import flush
from asfda.data.leases import LeaseBook
from asfda.data.predictions import stored_prediction
from asfda.io.volumes import Geometry, check_same_geometry, load_volume, reorient_to
from asfda.loop.infer import predict_case
from asfda.loop.rank import rank_pool
from asfda.models.inference import Predictor
from asfda.query.strategies import RankingOptions
from asfda.synth.anatomy import mni152
from asfda.worker.sample import make_sample_datastore
from orthanc_helpers import OrthancProcess, ct_series
from worker_helpers import free_port

SHAPE = (32, 32, 16)
N_SERIES = 4


@pytest.fixture(scope="module")
def anatomy():
    found = mni152(spacing=8.0, shape=SHAPE)
    affine = found.affine.copy()
    affine[:3, :3] = np.diag([-7.5, 7.0, 8.0])  # unequal spacing and a flipped axis catch geometry mistakes
    return found.image, found.label, affine


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, anatomy):
    process = OrthancProcess(tmp_path_factory.mktemp("orthanc"))
    image, _label, affine = anatomy
    rng = np.random.default_rng(0)
    process.series = []
    for index in range(N_SERIES):
        volume = image * rng.uniform(0.8, 1.2) + rng.normal(0, 0.02, image.shape)
        slices = ct_series(volume, affine, f"synthetic head {index}", patient=f"P{index}")
        process.upload(slices)
        process.series.append(slices[0].SeriesInstanceUID)
    yield process
    process.stop()


def pacs_store(root, url, **settings) -> Datastore:
    make_sample_datastore(root, n_cases=0, size=16)  # just the tiny model (labels background/blob)
    DicomwebConfig(url=url, **settings).validate().save(root)
    return Datastore(root)


def test_listing_lazy_fetch_and_ranking(orthanc, tmp_path, anatomy):
    store = pacs_store(tmp_path / "store", orthanc.dicomweb)
    source = store.image_source
    assert sorted(store.case_ids()) == sorted(orthanc.series)
    assert source.index.fetch_count() == 0 and not list(source.cache_dir.glob("1*"))  # listing fetches nothing
    volume = load_volume(store.image_path(orthanc.series[0]))
    assert tuple(volume.shape) == SHAPE and source.index.fetch_count() == 1
    check_same_geometry(Geometry(SHAPE, anatomy[2]), Geometry.of(volume))
    ranked = rank_pool(store, RankingOptions(k=2)).ranked
    assert sorted(r.case_id for r in ranked) == sorted(orthanc.series)
    assert source.index.fetch_count() == N_SERIES
    rank_pool(store, RankingOptions(k=2))  # same model, cached series: nothing fetched again
    assert source.index.fetch_count() == N_SERIES


def _materialise(root, case_id, queue):
    queue.put(str(Datastore(root).image_path(case_id)))


def test_concurrent_processes_fetch_a_series_once(orthanc, tmp_path):
    store = pacs_store(tmp_path / "store", orthanc.dicomweb)
    store.case_ids()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_materialise, args=(store.root, orthanc.series[1], queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    paths = {queue.get(timeout=5) for _ in workers}
    assert len(paths) == 1 and store.image_source.index.fetch_count() == 1
    assert len(list(store.image_source.cache_dir.iterdir())) == 2  # the series and .locks, no staging left


def _seg_series(orthanc):
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb)
    found = client.search_for_series(search_filters={"Modality": "SEG"})
    return client, found


def test_seg_written_back_and_read_again(orthanc, tmp_path, anatomy):
    store = pacs_store(tmp_path / "store", orthanc.dicomweb)
    source, case_id = store.image_source, orthanc.series[2]
    store.case_ids()
    _image, label, affine = anatomy
    store.save_label(case_id, LabelTag.FINAL, label, affine, [0, 1], author="Dr. Ada^Lovelace", model_version="v0001")
    source.index.queue_seg(case_id, "Dr. Ada^Lovelace", "v0001")
    leases = LeaseBook(store.root / "asfda.db")
    [result] = flush(store, source, leases)
    assert result["ok"], result
    client, found = _seg_series(orthanc)
    seg_uid = result["seg_series_uid"]
    assert seg_uid in {item["0020000E"]["Value"][0] for item in found}
    [seg] = client.retrieve_series(found[0]["0020000D"]["Value"][0], seg_uid)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == case_id
    assert "v0001" in seg.ContentDescription and "Lovelace" in str(seg.ContentCreatorName)
    labels, seg_affine = read_seg(seg, source.source_slices(case_id), {"background": 0, "blob": 1})
    local = load_volume(store.label_path(case_id, LabelTag.FINAL))
    back, back_affine = reorient_to(labels, seg_affine, Geometry.of(local))
    check_same_geometry(Geometry.of(local), Geometry(tuple(back.shape), back_affine))
    np.testing.assert_array_equal(back, local.numpy().astype(back.dtype))
    assert int(back.sum()) > 100 and source.index.pending_segs() == []
    assert leases.audit(case_id)[-1]["action"] == "SEG written to PACS"


def test_seg_rejected_stays_local_and_is_retried(orthanc, tmp_path, anatomy):
    store = pacs_store(tmp_path / "store", orthanc.dicomweb)
    source, case_id = store.image_source, orthanc.series[3]
    store.case_ids()
    store.save_label(case_id, LabelTag.FINAL, anatomy[1], anatomy[2], [0, 1], author="b", model_version="v0001")
    source.index.queue_seg(case_id, "b", "v0001")
    orthanc.reject_flag.write_text("reject")
    try:
        [refused] = flush(store, source)
    finally:
        orthanc.reject_flag.unlink()
    assert not refused["ok"] and "rejected" in refused["error"] and "\n" not in refused["error"]
    assert [p["case_id"] for p in source.index.pending_segs()] == [case_id]
    assert store.has_label(case_id, LabelTag.FINAL)
    [retried] = flush(store, source)
    assert retried["ok"] and source.index.pending_segs() == []
    assert source.index.seg_state(case_id)["attempts"] == 2


def test_pacs_down_or_slow_is_one_line_per_case(orthanc, tmp_path):
    store = pacs_store(tmp_path / "store", orthanc.dicomweb, listing_max_age_s=0)
    listed = store.case_ids()
    store.image_path(listed[0])
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    DicomwebConfig(url=dead, listing_max_age_s=0, timeout_s=2).save(store.root)
    down = Datastore(store.root)
    assert down.case_ids() == listed  # listing cannot refresh: the cached one serves
    assert down.image_path(listed[0]).is_dir()  # cached series need no PACS
    with pytest.raises(PacsUnavailable, match="cannot connect") as error:
        down.image_path(listed[1])
    assert "\n" not in str(error.value)

    class Sleepy(BaseHTTPRequestHandler):
        def do_GET(self):
            threading.Event().wait(3)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sleepy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        DicomwebConfig(url=f"http://127.0.0.1:{server.server_port}/dicom-web", timeout_s=0.5).save(store.root)
        with pytest.raises(PacsUnavailable, match="timed out"):
            Datastore(store.root).image_path(listed[2])
    finally:
        server.shutdown()


def test_deleted_and_broken_series(orthanc, tmp_path, anatomy):
    image, _label, affine = anatomy
    gone = ct_series(image, affine, "deleted later")
    gap = ct_series(image, affine, "missing slice")
    del gap[7]
    tilted = ct_series(image, affine, "mixed geometry")
    tilted[3].ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    for series in (gone, gap, tilted):
        orthanc.upload(series)
    try:
        store = pacs_store(tmp_path / "store", orthanc.dicomweb)
        assert {s[0].SeriesInstanceUID for s in (gone, gap, tilted)} <= set(store.case_ids())
        orthanc.delete_series(gone[0].SeriesInstanceUID)
        with pytest.raises(SeriesGone, match="no longer in the PACS"):
            store.image_path(gone[0].SeriesInstanceUID)
        with pytest.raises(BadSeries, match="missing slices"):
            store.image_path(gap[0].SeriesInstanceUID)
        with pytest.raises(BadSeries, match="mixed geometry"):
            store.image_path(tilted[0].SeriesInstanceUID)
        assert store.image_path(orthanc.series[0]).is_dir()  # the rest of the pool goes on
    finally:
        for series in (gap, tilted):
            orthanc.delete_series(series[0].SeriesInstanceUID)


def test_full_cache_keeps_leased_series(orthanc, tmp_path, monkeypatch):
    monkeypatch.setattr(source_module, "EVICT_GRACE_S", 0.0)
    series_mb = 32 * 32 * 2 * 16 / 2**20
    store = pacs_store(tmp_path / "store", orthanc.dicomweb, cache_mb=series_mb * 1.6)  # one series fits
    first, second = orthanc.series[0], orthanc.series[1]
    store.case_ids()
    store.image_path(first)
    leases = LeaseBook(store.root / "asfda.db")
    leases.take(first, "alice", 600)  # alice is labelling it: it must stay
    with pytest.raises(CacheFull, match="cache full"):
        store.image_path(second)
    assert store.image_source.is_cached(first)
    leases.release(first, "alice")
    assert store.image_path(second).is_dir() and not store.image_source.is_cached(first)  # LRU evicted
    assert pydicom.dcmread(next(store.image_path(second).glob("*.dcm"))).SeriesInstanceUID == second


def _one_series(store, series_uid):
    return len(list(store.image_path(series_uid).glob("*.dcm")))


def test_a_series_that_gains_an_instance_is_fetched_again_before_it_is_scored(orthanc, tmp_path, anatomy):
    image, _label, affine = anatomy
    slices = ct_series(image, affine, "grows")
    orthanc.upload(slices[:-1])  # the last slice arrives later (a series still being sent by the scanner)
    uid = slices[0].SeriesInstanceUID
    try:
        store = pacs_store(tmp_path / "store", orthanc.dicomweb)
        store.case_ids()
        model = store.models.load()
        predict_case(store, uid, model, Predictor(model.network, model.config))
        assert _one_series(store, uid) == SHAPE[2] - 1
        first = rank_pool(store, RankingOptions(k=2))
        fetched = store.image_source.index.fetch_count()
        orthanc.upload(slices[-1:])
        store.image_source.refresh()
        assert "the image changed" in stored_prediction(store, uid).stale_reason(store)
        again = rank_pool(store, RankingOptions(k=2))
        assert (again.scored, again.cached) == (1, first.scored + first.cached - 1)  # only the grown series
        assert store.image_source.index.fetch_count() == fetched + 1
        assert tuple(load_volume(store.image_path(uid)).shape) == SHAPE  # the whole series, fetched once more
        assert store.image_source.index.fetch_count() == fetched + 1
    finally:
        orthanc.delete_series(uid)


class _FakePacs:
    """The two calls DicomwebSource makes, over in-memory datasets: no Orthanc needed."""

    def __init__(self, slices):
        self.slices, self.retrieved = list(slices), 0

    def search_for_series(self, search_filters, fields, limit, offset):
        first = self.slices[0]
        item = {
            "0020000D": {"Value": [first.StudyInstanceUID]},
            "0020000E": {"Value": [first.SeriesInstanceUID]},
            "00080060": {"Value": ["CT"]},
            "00201209": {"Value": [len(self.slices)]},
        }
        return [item] if offset == 0 and search_filters["Modality"] == "CT" else []

    def retrieve_series(self, study_uid, series_uid):
        self.retrieved += 1
        return list(self.slices)


def test_a_stale_cached_series_is_fetched_again_without_a_real_pacs(tmp_path, anatomy):
    image, _label, affine = anatomy
    slices = ct_series(image, affine, "grows")
    store = pacs_store(tmp_path / "store", "http://127.0.0.1:9/dicom-web")
    fake = store.image_source._client = _FakePacs(slices[:-1])
    uid = slices[0].SeriesInstanceUID
    assert store.case_ids() == [uid]
    assert tuple(load_volume(store.image_path(uid)).shape) == (*SHAPE[:2], SHAPE[2] - 1)
    before = store.image_fingerprint(uid)
    store.image_path(uid)
    assert fake.retrieved == 1  # unchanged listing: the cached copy serves
    fake.slices = list(slices)
    store.image_source.refresh()
    assert store.image_fingerprint(uid) != before
    assert tuple(load_volume(store.image_path(uid)).shape) == SHAPE and fake.retrieved == 2
    store.image_path(uid)
    assert fake.retrieved == 2


def test_a_series_cached_before_fingerprints_were_recorded_is_fetched_again_once(tmp_path, anatomy):
    image, _label, affine = anatomy
    slices = ct_series(image, affine, "cached by an older release")
    root = tmp_path / "store"
    root.mkdir()
    with connect(root / "dicomweb.db") as db:
        db.execute("CREATE TABLE cached (case_id TEXT PRIMARY KEY, bytes INTEGER NOT NULL, last_used REAL NOT NULL)")
    store = pacs_store(root, "http://127.0.0.1:9/dicom-web")
    fake = store.image_source._client = _FakePacs(slices)
    uid = store.case_ids()[0]
    store.image_path(uid)
    with connect(root / "dicomweb.db") as db:
        db.execute("UPDATE cached SET fingerprint = NULL")  # as the older release left it
    assert tuple(load_volume(store.image_path(uid)).shape) == SHAPE and fake.retrieved == 2
    store.image_path(uid)
    assert fake.retrieved == 2


class _FakePacsOfMany:
    """Several series in memory; every retrieval waits at `barrier` so all fetchers are in flight at once."""

    def __init__(self, series, barrier=None):
        self.series, self.barrier = {s[0].SeriesInstanceUID: s for s in series}, barrier

    def search_for_series(self, search_filters, fields, limit, offset):
        if offset or search_filters["Modality"] != "CT":
            return []
        return [
            {
                "0020000D": {"Value": [s[0].StudyInstanceUID]},
                "0020000E": {"Value": [uid]},
                "00080060": {"Value": ["CT"]},
                "00201209": {"Value": [len(s)]},
            }
            for uid, s in self.series.items()
        ]

    def retrieve_series(self, study_uid, series_uid):
        if self.barrier is not None:
            self.barrier.wait(30)
        return list(self.series[series_uid])


def _encoded(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _cache_bytes(source) -> int:
    """What the cache folder holds on disk: series, staging and evicting folders alike."""
    total = 0
    for folder, _dirs, names in os.walk(source.cache_dir):  # os.walk skips a folder renamed while it walks
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # renamed or removed while we looked
                total += os.stat(os.path.join(folder, name)).st_size if name.endswith(".dcm") else 0
    return total


def test_concurrent_fetchers_never_push_the_cache_above_its_limit(tmp_path, anatomy):
    image, _label, affine = anatomy
    n_fetchers = 4
    series = [ct_series(image, affine, f"concurrent {index}", patient=f"C{index}") for index in range(n_fetchers)]
    series_bytes = sum(len(_encoded(ds)) for ds in series[0])
    limit = int(series_bytes * 2.5)  # two series fit, not three
    store = pacs_store(tmp_path / "store", "http://127.0.0.1:9/dicom-web", cache_mb=limit / 2**20)
    source = store.image_source
    source._client = _FakePacsOfMany(series, threading.Barrier(n_fetchers))
    uids = store.case_ids()
    peak, stop, watch_errors = [0], threading.Event(), []

    def watch():
        try:
            while not stop.is_set():
                peak[0] = max(peak[0], _cache_bytes(source))
        except Exception as exc:  # a watcher that died measured nothing: fail below, not a warning
            watch_errors.append(exc)

    outcomes = {}

    def fetch(uid):
        try:
            outcomes[uid] = source.image_path(uid)
        except CacheFull as exc:
            outcomes[uid] = exc

    watcher = threading.Thread(target=watch)
    watcher.start()
    fetchers = [threading.Thread(target=fetch, args=(uid,)) for uid in uids]
    for thread in fetchers:
        thread.start()
    for thread in fetchers:
        thread.join(60)
    stop.set()
    watcher.join()
    fetched = [uid for uid, got in outcomes.items() if not isinstance(got, CacheFull)]
    assert len(outcomes) == n_fetchers and len(fetched) == 2  # the others: a one-line CacheFull, nothing lost
    assert all("\n" not in str(got) for got in outcomes.values() if isinstance(got, CacheFull))
    assert not watch_errors and max(peak[0], _cache_bytes(source)) <= limit
    assert sum(e["bytes"] for e in source.index.cached()) <= limit and source.index.reservations() == []
    assert sorted(p.name for p in source.cache_dir.iterdir()) == sorted([".locks", *fetched])  # no staging left


def test_a_failed_fetch_releases_its_reservation(tmp_path, anatomy, monkeypatch):
    image, _label, affine = anatomy
    store = pacs_store(tmp_path / "store", "http://127.0.0.1:9/dicom-web")
    source = store.image_source
    source._client = _FakePacsOfMany([ct_series(image, affine, "disk full")])
    [uid] = store.case_ids()

    def disk_full(folder, encoded):
        (folder / "00000.dcm").write_bytes(encoded[0])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(source_module, "_write_files", disk_full)
    with pytest.raises(OSError, match="No space"):
        source.image_path(uid)
    assert source.index.reservations() == [] and source.index.cached() == []
    assert [p.name for p in source.cache_dir.iterdir()] == [".locks"]


def _reserve_and_die(root, case_id, staging_name):
    from asfda.core.process_identity import ProcessIdentity

    source = Datastore(root).image_source
    (source.cache_dir / staging_name).mkdir()
    (source.cache_dir / staging_name / "00000.dcm").write_bytes(b"half a series")
    source.index.reserve(staging_name.split(".")[-2], case_id, 10**9, "fp", ProcessIdentity.current())
    os._exit(0)  # as SIGKILL leaves it: no finally ran


def test_reservations_of_dead_processes_are_dropped_when_the_cache_opens(tmp_path, anatomy):
    image, _label, affine = anatomy
    store = pacs_store(tmp_path / "store", "http://127.0.0.1:9/dicom-web")
    slices = ct_series(image, affine, "killed mid-fetch")
    store.image_source._client = _FakePacsOfMany([slices])
    [uid] = store.case_ids()
    staging_name = source_module._staging_name(uid, "deadbeef")
    child = multiprocessing.get_context("fork").Process(target=_reserve_and_die, args=(store.root, uid, staging_name))
    child.start()
    child.join(30)
    assert [r["case_id"] for r in store.image_source.index.reservations()] == [uid]  # a gigabyte held by nobody
    reopened = Datastore(store.root).image_source
    assert reopened.index.reservations() == [] and not (reopened.cache_dir / staging_name).exists()
    reopened._client = _FakePacsOfMany([slices])
    assert reopened.image_path(uid).is_dir()  # the cache has room again
    live = source_module.ProcessIdentity.current()
    reopened.index.reserve("mine", uid, 1, "fp", live)
    assert [r["token"] for r in Datastore(store.root).image_source.index.reservations()] == ["mine"]  # alive: kept
