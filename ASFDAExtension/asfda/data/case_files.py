"""Adding images to a datastore from paths a user names: files, folders of files, DICOM series folders."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from asfda.core.atomic import atomic_write_with, fsync_dir
from asfda.core.case_ids import validate_case_id
from asfda.core.errors import AsfdaError, CorruptImage, UnknownCase
from asfda.data.datastore import Datastore
from asfda.io.volumes import load_volume, strip_volume_suffix, volume_suffix


class CaseExists(AsfdaError):
    pass


@dataclass(frozen=True)
class CaseSource:
    path: Path
    case_id: str


def expand_sources(paths: Sequence[Path], case_id: Optional[str] = None) -> Tuple[List[CaseSource], List[Path]]:
    """Cases named by `paths` and the files skipped inside folders (not a volume).

    A file is one case; a folder holding NIfTI/NRRD files is one case per file; a folder holding only
    folders is one DICOM series per sub-folder; any other folder is one DICOM series.
    """
    sources: List[Path] = []
    skipped: List[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise CorruptImage(f"{path}: file not found")
        if path.is_file():
            if not volume_suffix(path):
                raise CorruptImage(
                    f"{path.name}: unsupported format (use NIfTI .nii/.nii.gz, NRRD .nrrd or a DICOM folder)"
                )
            sources.append(path)
            continue
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        volumes = [p for p in entries if p.is_file() and volume_suffix(p)]
        if volumes:
            sources += volumes
            skipped += [p for p in entries if p not in volumes]
        elif entries and all(p.is_dir() for p in entries):
            sources += entries
        else:
            sources.append(path)
    if case_id is not None and len(sources) != 1:
        raise AsfdaError(f"--id names one case but the paths hold {len(sources)} images")
    cases = [CaseSource(p, validate_case_id(case_id or strip_volume_suffix(p))) for p in sources]
    seen = {}
    for case in cases:
        if case.case_id in seen:
            raise AsfdaError(f"{seen[case.case_id].name} and {case.path.name} would both be case {case.case_id!r}")
        seen[case.case_id] = case.path
    return cases, skipped


def has_case(store: Datastore, case_id: str) -> bool:
    try:
        store.image_path(case_id)
        return True
    except UnknownCase:
        return False


def _copy_series(source: Path, target: Path) -> None:
    # Copy beside the target, make every file durable, then rename: a reader sees no half series.
    staging = target.parent / f".{target.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    try:
        for folder, _dirs, files in os.walk(staging):
            for name in files:
                with open(Path(folder) / name, "rb") as handle:
                    os.fsync(handle.fileno())
        os.rename(staging, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def add_case(store: Datastore, source: CaseSource) -> Path:
    """Check the image reads as a 3D volume, then copy it in atomically; an existing case is refused."""
    if has_case(store, source.case_id):
        raise CaseExists(f"case {source.case_id!r} is already in the datastore ({source.path.name} not added)")
    load_volume(source.path)  # CorruptImage with the file name when it does not read
    if source.path.is_dir():
        target = store.images_dir / source.case_id
        _copy_series(source.path, target)
        return target
    target = store.images_dir / f"{source.case_id}{volume_suffix(source.path)}"
    atomic_write_with(target, lambda tmp: shutil.copyfile(source.path, tmp))
    return target
