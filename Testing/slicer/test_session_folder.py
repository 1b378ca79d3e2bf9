"""The session's download folder: one per Slicer session, and the sweep of what crashed sessions left (issue 20)."""

import os
import time

from ASFDALib import session_folder
from ASFDALib.session_folder import (
    createSessionFolder,
    newSubfolder,
    ownerPid,
    processAlive,
    removeStaleSessionFolders,
    removeSubfolder,
)


def test_session_folder_is_named_after_this_process(tmp_path):
    folder = createSessionFolder(str(tmp_path))
    assert os.path.isdir(folder) and ownerPid(os.path.basename(folder)) == os.getpid()
    assert ownerPid("asfda-slicer-k2j4_x9q") is None and ownerPid("other-123-x") is None


def test_stale_folders_of_ended_sessions_are_removed_and_live_ones_kept(tmp_path):
    dead, alive = 4_000_000, os.getpid()
    deadFolder = tmp_path / f"asfda-slicer-{dead}-abc"
    (deadFolder / "case-a-1234").mkdir(parents=True)
    (deadFolder / "case-a-1234" / "image.nii.gz").write_bytes(b"x" * 1000)
    liveFolder = tmp_path / f"asfda-slicer-{alive}-def"
    liveFolder.mkdir()
    oldLegacy, newLegacy = tmp_path / "asfda-slicer-k2j4_x9q", tmp_path / "asfda-slicer-p0o9i8u7"
    oldLegacy.mkdir()
    newLegacy.mkdir()
    twoDaysAgo = time.time() - 2 * 24 * 3600
    os.utime(oldLegacy, (twoDaysAgo, twoDaysAgo))
    unrelated = tmp_path / f"other-{dead}-x"
    unrelated.mkdir()
    removed = removeStaleSessionFolders(str(tmp_path), isAlive=lambda pid: pid == alive)
    assert sorted(removed) == sorted([str(deadFolder), str(oldLegacy)])
    assert liveFolder.exists() and newLegacy.exists() and unrelated.exists()


def test_process_alive_without_psutil(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)
    assert processAlive(os.getpid())
    assert not processAlive(4_000_000) and not processAlive(0)


def test_subfolders_are_fresh_and_only_inside_the_session(tmp_path):
    session = createSessionFolder(str(tmp_path))
    first, second = newSubfolder(session, "case-a"), newSubfolder(session, "case-a")
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    removeSubfolder(session, first)
    assert not os.path.exists(first)
    outside = tmp_path / "keep"
    outside.mkdir()
    removeSubfolder(session, str(outside))
    removeSubfolder(session, session)
    assert outside.exists() and os.path.isdir(session)
    assert session_folder.PREFIX in session
