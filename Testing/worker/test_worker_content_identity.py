"""Issue 18 "Stale predictions": a stored prediction is served only for the image it was made from; the
signal cache is pruned at worker start.

The reproduction: a 16^3 prediction was served for a 20^3 image after the image changed (a restored file
whose mtime is older than the prediction; a DICOM folder, which was never checked at all).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from asfda.data.datastore import Datastore
from asfda.loop.rank import rank_pool
from asfda.query.strategies import RankingOptions
from asfda.scoring.cache import SignalCache, model_cache_key
from asfda.scoring.options import ScoringOptions
from asfda.worker.app import create_app
from asfda.worker.context import Worker
from asfda.worker.sample import make_sample_datastore, sample_affine
from asfda.worker.settings import WorkerSettings
from orthanc_helpers import ct_series
from worker_helpers import WorkerProcess


def _shape(reply) -> tuple:
    assert reply.status_code == 200, reply.text
    return tuple(nib.Nifti1Image.from_bytes(gzip.decompress(reply.content)).shape)


def _write_series(folder, shape, seed):
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    volume = np.random.default_rng(seed).normal(0.5, 0.2, shape)
    for number, ds in enumerate(ct_series(volume, sample_affine(), f"series {seed}")):
        ds.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    root = tmp_path_factory.mktemp("stale") / "store"
    make_sample_datastore(root, n_cases=1, size=16)
    _write_series(root / "images" / "dicom0", (16, 16, 16), seed=1)
    process = WorkerProcess(root).wait_healthy()
    yield process
    process.stop()


def test_a_restored_nifti_older_than_its_prediction_is_predicted_again(worker):
    client = worker.client
    assert _shape(client.post("/cases/case00/infer")) == (16, 16, 16)
    image = worker.datastore / "images" / "case00.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), sample_affine()), str(image))
    an_hour_ago = time.time() - 3600  # restored from a backup: older than the stored prediction
    os.utime(image, (an_hour_ago, an_hour_ago))
    stale = client.get("/cases/case00/prediction")
    assert stale.status_code == 404 and "the image changed since it was made" in stale.json()["detail"]
    assert _shape(client.post("/cases/case00/infer")) == (20, 20, 20)
    assert _shape(client.get("/cases/case00/prediction")) == (20, 20, 20)
    jobs = [j for j in client.get("/jobs").json() if j["kind"] == "infer"]
    before = len(jobs)
    assert _shape(client.post("/cases/case00/infer")) == (20, 20, 20)  # unchanged: served, no new job
    assert len([j for j in client.get("/jobs").json() if j["kind"] == "infer"]) == before


def test_a_dicom_folder_that_gained_slices_is_predicted_again(worker):
    client = worker.client
    assert _shape(client.post("/cases/dicom0/infer")) == (16, 16, 16)
    _write_series(worker.datastore / "images" / "dicom0", (16, 16, 20), seed=2)
    assert client.get("/cases/dicom0/prediction").status_code == 404
    assert _shape(client.post("/cases/dicom0/infer")) == (16, 16, 20)


def _child_version(store: Datastore) -> str:
    model = store.models.load()
    with torch.no_grad():
        next(model.network.parameters()).add_(0.5)
    return store.models.publish(model.network, model.config, parent=model.version)


def test_worker_start_drops_cached_signals_of_versions_neither_active_nor_the_parent(tmp_path):
    root = tmp_path / "store"
    make_sample_datastore(root, n_cases=2, size=16)
    store = Datastore(root)
    scoring = ScoringOptions(loader_workers=0)
    rank_pool(store, RankingOptions(k=1), scoring=scoring)  # v0001's signals
    _child_version(store)
    rank_pool(store, RankingOptions(k=1), scoring=scoring)  # v0002's, next to its parent's
    _child_version(store)  # v0003 active (by a CLI adapt, say): v0001 is now neither active nor parent
    cache = SignalCache(root / "asfda.db")
    keys = {v: model_cache_key(store.models.content_id(v)) for v in ("v0001", "v0002")}
    assert cache.model_keys() == set(keys.values())
    create_app(WorkerSettings(datastore=root))
    assert cache.model_keys() == {keys["v0002"]}


def test_the_worker_reads_again_a_config_edited_with_its_mtime_preserved(tmp_path):
    root = tmp_path / "store"
    make_sample_datastore(root, n_cases=1, size=16)
    worker = Worker(settings=None, store=Datastore(root), jobs=None, runner=None, leases=None)
    version, config = worker.active()
    path = root / "models" / version / "config.json"
    before = path.stat()
    edited = json.loads(path.read_text())
    edited["label_colors"] = {"blob": [0.1, 0.8, 0.1]}
    path.write_text(json.dumps(edited))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert worker.active()[1].label_colors == {"blob": [0.1, 0.8, 0.1]} != config.label_colors
