"""Issue 18 "Content identity": image fingerprints a `cp -p` cannot fake, model content ids in the signal
cache's key, predictions tied to what they were made from, and a pruned signal cache."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from asfda.core.errors import GeometryMismatch
from asfda.core.file_identity import file_fingerprint, partial_hash
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.predictions import stored_prediction
from asfda.loop.infer import predict_case
from asfda.loop.rank import rank_pool
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.query.strategies import RankingOptions
from asfda.scoring.cache import SignalCache, model_cache_key, prune_signal_cache
from asfda.scoring.options import ScoringOptions
from engine_helpers import blob, pool_datastore, shifted, write_nifti

POOL = 4


def _rank(store):
    return rank_pool(store, RankingOptions(k=2), scoring=ScoringOptions(loader_workers=0))


def copy_preserving_mtime(source: Path, target: Path) -> None:
    """What `cp -p SOURCE TARGET` does to an existing target: same inode, bytes replaced, times restored."""
    before = target.stat()
    shutil.copyfile(source, target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def _same_size_scan(folder: Path, name: str, shape, seed: int, affine=None) -> Path:
    label, image = blob(seed, shape=shape)
    return write_nifti(folder / name, shifted(image, label, seed, strength=0.5), affine)  # .nii: size = shape


def test_a_different_scan_copied_in_with_cp_p_gets_a_new_fingerprint_and_its_signals_are_recomputed(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    spare = tmp_path / "spare"
    spare.mkdir()
    for case in ("case0", "case1"):
        (store.images_dir / f"{case}.nii.gz").unlink()
    old = _same_size_scan(store.images_dir, "case0.nii", (24, 24, 24), 10)
    first = _rank(store)
    assert first.scored == POOL - 1
    before = old.stat()
    fingerprint = store.image_fingerprint("case0")
    copy_preserving_mtime(_same_size_scan(spare, "other.nii", (24, 24, 24), 11), old)
    after = old.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert store.image_fingerprint("case0") != fingerprint
    again = _rank(store)
    assert (again.scored, again.cached) == (1, POOL - 2)  # only the replaced scan is scored again
    new_dkd = next(r.dkd for r in again.ranked if r.case_id == "case0")
    assert new_dkd != pytest.approx(next(r.dkd for r in first.ranked if r.case_id == "case0"))


def test_the_partial_hash_tells_apart_files_whose_stat_fields_could_match(tmp_path):
    # Where ctime and the inode cannot be trusted (Windows' st_ctime is the creation time), the ends of
    # the file still differ: at the head, at the tail, and with the size.
    a, b = tmp_path / "a", tmp_path / "b"
    body = bytes(range(256)) * (3 << 12)  # 3 MiB: head and tail are read, the middle is not
    a.write_bytes(body)
    for changed in (b"X" + body[1:], body[:-1] + b"X"):
        b.write_bytes(changed)
        assert partial_hash(a) != partial_hash(b)
    b.write_bytes(body[: len(body) // 2] + b"X" + body[len(body) // 2 + 1 :])
    assert partial_hash(a) == partial_hash(b)  # by design: only the ends are read


def test_a_dicom_folder_member_replaced_with_cp_p_changes_the_folder_fingerprint(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index:03d}.dcm").write_bytes(bytes([index]) * 40_000)
    fingerprint = file_fingerprint(folder)
    other = tmp_path / "other.dcm"
    other.write_bytes(bytes([9]) * 40_000)
    copy_preserving_mtime(other, folder / "001.dcm")
    assert file_fingerprint(folder) != fingerprint
    replaced = file_fingerprint(folder)
    (folder / "003.dcm").write_bytes(b"an added instance")
    assert file_fingerprint(folder) != replaced


def test_an_upload_is_checked_against_the_scan_copied_in_with_cp_p(tmp_path):
    store = Datastore(tmp_path / "ds")
    spare = tmp_path / "spare"
    spare.mkdir()
    image = _same_size_scan(store.images_dir, "case0.nii", (16, 16, 20), 1)
    assert store.geometry("case0").shape == (16, 16, 20)  # the worker's Datastore caches it
    copy_preserving_mtime(_same_size_scan(spare, "other.nii", (20, 16, 16), 2), image)
    label, _ = blob(2, shape=(20, 16, 16))
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    store.save_label("case0", LabelTag.FINAL, label, affine, [0, 1])
    old_label, _ = blob(1, shape=(16, 16, 20))
    with pytest.raises(GeometryMismatch):
        store.save_label("case0", LabelTag.FINAL, old_label, affine, [0, 1])


def test_a_version_recreated_under_the_same_name_with_other_weights_is_scored_again(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    assert _rank(store).scored == POOL
    config = store.models.load().config
    shutil.rmtree(store.models.root / "v0001")
    torch.manual_seed(7)
    assert store.models.publish(build_network(config), config, parent=None, note="other weights") == "v0001"
    again = _rank(store)
    assert (again.scored, again.cached) == (POOL, 0)


def test_a_config_edited_in_place_is_scored_again_even_with_its_mtime_restored(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    assert _rank(store).scored == POOL
    path = store.models.root / "v0001" / "config.json"
    before = path.stat()
    config = json.loads(path.read_text())
    config["intensity"] = {**config["intensity"], "mode": "percentile"}  # other numbers from the same weights
    path.write_text(json.dumps(config))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _rank(store).scored == POOL


def test_content_id_is_written_at_publish_and_recorded_lazily_for_an_older_version(tmp_path):
    store = pool_datastore(tmp_path / "ds", 0)
    meta_path = store.models.root / "v0001" / "meta.json"
    meta = json.loads(meta_path.read_text())
    published = meta["content_id"]
    assert published and set(meta["content_files"]) >= {"weights.pt", "config.json"}
    assert store.models.content_id("v0001") == published == store.models.load().content_id
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("content_id", "content_files")}))
    assert store.models.content_id("v0001") == published
    assert json.loads(meta_path.read_text())["content_id"] == published
    assert [v.content_id for v in store.models.versions()] == [published]


def test_a_cache_keyed_by_version_name_is_dropped(tmp_path):
    db_path = tmp_path / "asfda.db"
    with connect(db_path) as db:
        db.execute("CREATE TABLE signals (case_id TEXT, model_version TEXT, fingerprint TEXT, options_key TEXT)")
        db.execute("INSERT INTO signals VALUES ('case0', 'v0001', 'f', 'o')")
    cache = SignalCache(db_path)
    assert cache.model_keys() == set()


def test_the_cache_keeps_only_the_active_version_and_its_parent(tmp_path):
    store = pool_datastore(tmp_path / "ds", POOL)
    _rank(store)
    model = store.models.load()
    keys = [model_cache_key(model.content_id)]
    for _ in range(2):  # v0002 (child of v0001), v0003 (child of v0002), each ranked while active
        with torch.no_grad():
            next(model.network.parameters()).add_(0.5)
        version = store.models.publish(model.network, model.config, parent=model.version)
        model = store.models.load(version)
        keys.append(model_cache_key(model.content_id))
        _rank(store)  # a rank prunes before it scores: v0001 goes once v0003 is active
    cache = SignalCache(store.root / "asfda.db")
    assert cache.model_keys() == set(keys[1:])
    store.models.activate("v0001")  # a rollback: v0001 has no parent, so only its own entries may stay
    assert prune_signal_cache(store) == 2 * POOL
    assert cache.model_keys() == set()
    assert _rank(store).scored == POOL and cache.model_keys() == {keys[0]}


def test_a_prediction_records_what_it_was_made_from_and_goes_stale_when_either_changes(tmp_path):
    store = pool_datastore(tmp_path / "ds", 2)
    model = store.models.load()
    predict_case(store, "case0", model, Predictor(model.network, model.config))
    found = stored_prediction(store, "case0")
    assert found.image_fingerprint == store.image_fingerprint("case0")
    assert found.model_content_id == model.content_id and found.stale_reason(store) is None
    path = store.models.root / "v0001" / "config.json"
    path.write_text(path.read_text() + "\n")  # same meaning, other bytes: the content id says "other content"
    assert "holds other weights or configs" in found.stale_reason(store)
    shutil.rmtree(store.models.root / "v0001")
    assert "no longer exists" in found.stale_reason(store)
    store = pool_datastore(tmp_path / "ds2", 2)
    model = store.models.load()
    predict_case(store, "case1", model, Predictor(model.network, model.config))
    label, image = blob(5)
    write_nifti(store.images_dir / "case1.nii.gz", image)
    assert stored_prediction(store, "case1").stale_reason(store) == "the image changed since it was made"
