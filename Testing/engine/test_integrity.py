"""Issue 18: a published model version is durable as a whole; atomic writes honour the umask."""

import os
from pathlib import Path

from asfda.core.atomic import atomic_write_text
from asfda.models.networks import build_network
from asfda.models.store import ModelStore
from engine_helpers import tiny_config


def test_publish_fsyncs_every_file_and_directory_including_meta_before_the_rename(tmp_path, monkeypatch):
    config = tiny_config()
    store = ModelStore(tmp_path / "models")
    synced, renamed_at = [], []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst):
        renamed_at.append(len(synced))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    version = store.publish(build_network(config), config, parent=None, activate=False)
    before = {p.name for p in synced[: renamed_at[0]]}
    folder = store.root / version
    assert "meta.json" in before
    missing = {p.name for p in folder.rglob("*")} - before
    assert not missing, f"not fsynced before the rename: {missing}"
    assert any(p.name.startswith(".staging-") for p in synced[: renamed_at[0]])  # the folder's own entries


def test_atomic_writes_honour_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o664
