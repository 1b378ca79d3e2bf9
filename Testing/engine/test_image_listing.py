"""Datastore.image_path lists images/ once per change of the folder, not once per call (issue 18 follow-up),
and still refuses a case id two files name, mixed-case suffixes included, and still sees a new image at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from asfda.core.errors import DuplicateCase, UnknownCase
from asfda.data import image_listing
from asfda.data.datastore import Datastore


def _store(tmp_path: Path, cases: int = 50) -> Datastore:
    store = Datastore(tmp_path / "ds")
    for i in range(cases):  # image_path only looks at names: empty files stand in for volumes
        (store.images_dir / f"case{i:03d}.nii.gz").write_bytes(b"")
    return store


def _count_listings(monkeypatch, folder: Path) -> list:
    listed = []
    real = Path.iterdir

    def counting(self):
        if self == folder:
            listed.append(1)
        return real(self)

    monkeypatch.setattr(Path, "iterdir", counting)
    return listed


def test_image_path_lists_the_folder_once_not_once_per_call(tmp_path, monkeypatch):
    monkeypatch.setattr(image_listing, "RACY_WINDOW_S", 0.0)  # trust a listing made right after the change
    store = _store(tmp_path)
    listed = _count_listings(monkeypatch, store.images_dir)
    for _ in range(3):
        for i in range(50):
            assert store.image_path(f"case{i:03d}") == store.images_dir / f"case{i:03d}.nii.gz"
    assert len(listed) == 1  # before: 150, one full listing per call


def test_a_listing_made_within_the_timestamp_window_is_not_trusted(tmp_path, monkeypatch):
    store = _store(tmp_path, cases=3)  # just written: a further change could share the folder's mtime
    listed = _count_listings(monkeypatch, store.images_dir)
    store.image_path("case000")
    store.image_path("case001")
    assert len(listed) == 2


def test_duplicates_with_mixed_case_suffixes_are_refused_even_when_added_after_a_listing(tmp_path, monkeypatch):
    monkeypatch.setattr(image_listing, "RACY_WINDOW_S", 0.0)
    store = _store(tmp_path, cases=3)
    assert store.image_path("case001").name == "case001.nii.gz"  # listed and cached
    time.sleep(0.05)  # past the file system's timestamp tick, so the folder's mtime moves
    (store.images_dir / "case001.NII").write_bytes(b"")
    with pytest.raises(DuplicateCase, match=r"case001.NII, case001.nii.gz"):
        store.image_path("case001")
    assert "case001" not in store.case_ids() and set(store.duplicate_cases()) == {"case001"}


def test_a_new_image_is_seen_at_once_and_a_removed_one_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(image_listing, "RACY_WINDOW_S", 0.0)
    store = _store(tmp_path, cases=3)
    store.image_path("case000")  # cached listing without case099
    (store.images_dir / "case099.nrrd").write_bytes(b"")  # even within the same timestamp tick
    assert store.image_path("case099") == store.images_dir / "case099.nrrd"
    (store.images_dir / "case099.nrrd").unlink()
    time.sleep(0.05)
    with pytest.raises(UnknownCase):
        store.image_path("case099")
    (store.images_dir / "case098").mkdir()  # a DICOM series folder
    assert store.image_path("case098").is_dir()


def test_the_listing_bench_prints_both_lookups(capsys):
    from asfda.cli import main

    assert main(["bench", "listing", "--cases", "20", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "image_path at 20 cases" in out and "one listing per call (before)" in out and "speed-up:" in out
