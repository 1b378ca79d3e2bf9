"""Is a DICOM series one regular volume (a folder on disk or instances retrieved from a PACS)? And the
voxel -> RAS affine of its slice stack."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from asfda.core.errors import BadSeries

MAX_FOLDER_FILES = 10_000  # a CT of 0.5 mm slices over 2 m has 4,000; more is not one series
ORIENTATION_TOL = 1e-4
SPACING_REL_TOL = 0.05  # slice gaps may differ by 5 % (rounded positions) and still be one regular grid


def _floats(ds, keyword: str, case_id: str) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise BadSeries(f"series {case_id}: an instance lacks {keyword} (not a cross-sectional volume)")
    return np.asarray([float(v) for v in value], dtype=np.float64)


def sorted_slices(datasets: Sequence, case_id: str, expected: int = 0) -> List:
    """The instances in slice order; BadSeries for mixed geometry, missing or duplicate slices."""
    images = [ds for ds in datasets if "PixelData" in ds]
    if datasets and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        raise BadSeries(f"series {case_id}: multi-frame instances are not supported")
    if len(images) < 2:
        raise BadSeries(f"series {case_id}: {len(images)} image instance(s), not a volume")
    if expected and len(images) < expected:
        raise BadSeries(f"series {case_id}: the PACS returned {len(images)} of {expected} listed instances")
    orientation = _floats(images[0], "ImageOrientationPatient", case_id)
    first = (int(images[0].Rows), int(images[0].Columns), tuple(_floats(images[0], "PixelSpacing", case_id)))
    for ds in images[1:]:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", case_id), orientation, atol=ORIENTATION_TOL):
            raise BadSeries(f"series {case_id}: mixed geometry (slices with different orientations)")
        if (int(ds.Rows), int(ds.Columns), tuple(_floats(ds, "PixelSpacing", case_id))) != first:
            raise BadSeries(f"series {case_id}: mixed geometry (slices with different sizes or pixel spacing)")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [float(_floats(ds, "ImagePositionPatient", case_id) @ normal) for ds in images]
    order = np.argsort(positions)
    gaps = np.diff(np.asarray(positions)[order])
    step = float(np.median(gaps))
    if step <= 1e-6 or np.any(gaps <= 1e-6):
        raise BadSeries(f"series {case_id}: several slices share one position (mixed acquisitions)")
    worst = float(np.max(np.abs(gaps - step)))
    if worst > SPACING_REL_TOL * step:
        where = int(np.argmax(np.abs(gaps - step)))
        what = "missing slices" if gaps[where] > step else "uneven slice spacing"
        raise BadSeries(f"series {case_id}: {what} (a gap of {gaps[where]:.3g} mm where the spacing is {step:.3g} mm)")
    return [images[i] for i in order]


def stack_affine(slices: Sequence) -> np.ndarray:
    """voxel (column, row, slice) -> RAS mm for slices sorted along their normal."""
    orientation = np.asarray([float(v) for v in slices[0].ImageOrientationPatient])
    row_spacing, column_spacing = (float(v) for v in slices[0].PixelSpacing)
    origin = np.asarray([float(v) for v in slices[0].ImagePositionPatient])
    last = np.asarray([float(v) for v in slices[-1].ImagePositionPatient])
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * column_spacing  # along a row: the column index grows
    lps[:3, 1] = orientation[3:] * row_spacing
    lps[:3, 2] = (last - origin) / max(len(slices) - 1, 1)
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS -> RAS


def check_dicom_folder(folder: Path) -> None:
    """Refuse a DICOM folder that is not one regular series before any reader decodes it: a symbolic link
    (it could read files from anywhere on the machine into the datastore), a subfolder, a file that is not
    DICOM, several series, or instances whose geometry disagrees. Headers only (large values deferred), so
    memory stays small whatever the folder holds. BadSeries (a CorruptImage) in one line naming the file."""
    folder = Path(folder)
    name = folder.name
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if len(entries) > MAX_FOLDER_FILES:
        raise BadSeries(f"series {name}: {len(entries)} files, more than {MAX_FOLDER_FILES} (not one series)")
    datasets = []
    for entry in entries:
        if entry.is_symlink():
            raise BadSeries(f"series {name}: {entry.name} is a symbolic link (copy the files themselves)")
        if not entry.is_file():
            raise BadSeries(f"series {name}: {entry.name} is a folder (one series per folder, no subfolders)")
        try:
            datasets.append(pydicom.dcmread(str(entry), defer_size="4 KB"))
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            why = type(exc).__name__
            raise BadSeries(f"series {name}: {entry.name} is not a readable DICOM file ({why})") from None
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise BadSeries(f"series {name}: {len(series)} series in one folder (put each series in its own folder)")
    sorted_slices(datasets, name)
