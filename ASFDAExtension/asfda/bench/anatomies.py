"""Bring every cached source onto one coarse grid with one label definition (background / brain)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from asfda.bench.sources import SourceRecord, read_manifest, verify
from asfda.synth.anatomy import BRAIN_CLOSING_MM, Anatomy, crop_or_pad_to, mni152, resample_to_spacing

BRAIN_LABELS = {"background": 0, "brain": 1}
TISSUE_LABELS = {"background": 0, "grey_matter": 1, "white_matter": 2}
TASK_LABELS = {"brain": BRAIN_LABELS, "tissue": TISSUE_LABELS}


def _canonical(path: Path) -> nib.Nifti1Image:
    image = nib.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4:  # the ROBEX atlas is stored with a singleton fourth axis
        data = data[..., 0]
    return nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))


def _scale(image: np.ndarray) -> np.ndarray:
    # Sources store 8-bit, 12-bit and float intensities: bring the bright head tissue to about 1.
    head = image > 0.05 * float(image.max())
    scale = float(np.percentile(image[head], 99)) if head.any() else 1.0
    return np.clip(image / max(scale, 1e-6), 0, 1.5).astype(np.float32)


def harmonise(
    record: SourceRecord,
    cache: Path,
    spacing: float,
    shape: Sequence[int],
    closing_mm: float = BRAIN_CLOSING_MM,
    task: str = "brain",
) -> Anatomy:
    if record.name == "mni152":
        anatomy = mni152(spacing=spacing, shape=tuple(shape), task=task, closing_mm=closing_mm)
        anatomy.image = _scale(anatomy.image)
        return anatomy
    if task != "brain":
        raise ValueError(f"{record.name} has no {task} labels (only mni152 has)")
    t1 = _canonical(cache / record.files["t1"])
    brain = _canonical(cache / record.files["brain"])
    image, affine = resample_to_spacing(t1.get_fdata(), t1.affine, spacing, order=1)
    mask, _ = resample_to_spacing((brain.get_fdata() > 0).astype(np.float32), brain.affine, spacing, order=1)
    mask = ndimage.binary_fill_holes(mask > 0.5)
    # The grids of image and mask are the same in every source used here; guard against a silent mismatch.
    if mask.shape != image.shape:
        raise RuntimeError(f"{record.name}: image {image.shape} and mask {mask.shape} grids differ")
    center = ndimage.center_of_mass(mask)
    image, new_affine = crop_or_pad_to(_scale(image.astype(np.float32)), tuple(shape), affine, center)
    label, _ = crop_or_pad_to(mask.astype(np.uint8), tuple(shape), affine, center)
    return Anatomy(record.name, image, label, new_affine, dict(BRAIN_LABELS))


def load_anatomies(
    cache: Path,
    spacing: float,
    shape: Sequence[int],
    names: Sequence[str] = (),
    mni152_closing_mm: float = BRAIN_CLOSING_MM,
    task: str = "brain",
) -> List[Anatomy]:
    """Harmonised anatomies of every ready source (memoised per grid and mask definition inside the cache)."""
    cache = Path(cache)
    found = []
    for record in read_manifest(cache):
        if record.status != "ready" or (names and record.name not in names):
            continue
        tag = f"_close{mni152_closing_mm:g}mm" if record.name == "mni152" else ""
        tag = "_tissue" if task == "tissue" else tag
        memo = cache / "grid" / f"{record.name}{tag}_{spacing:g}mm_{'x'.join(map(str, shape))}.npz"
        if memo.exists():
            stored = np.load(memo)
            found.append(
                Anatomy(record.name, stored["image"], stored["label"], stored["affine"], dict(TASK_LABELS[task]))
            )
            continue
        verify(cache, record)
        anatomy = harmonise(record, cache, spacing, shape, mni152_closing_mm, task)
        memo.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(memo, image=anatomy.image, label=anatomy.label, affine=anatomy.affine)
        found.append(anatomy)
    if not found:
        raise FileNotFoundError(f"{cache}: no ready anatomy; run `asfda bench data --cache {cache}`")
    return found


def mask_summary(anatomy: Anatomy, spacing: float) -> dict:
    """How a brain mask is defined, in numbers comparable across sources on the common grid: its volume
    (ml), its share of the head (T1 above 10% of its 99th percentile, holes filled), and the share of the
    mask darker than half the mask's median T1 (CSF-like: a whole-brain mask holds sulcal CSF)."""
    brain = anatomy.label > 0
    head = ndimage.binary_fill_holes((anatomy.image > 0.1 * np.percentile(anatomy.image, 99)) | brain)
    inside = anatomy.image[brain]
    return {
        "brain_ml": float(brain.sum() * spacing**3 / 1000),
        "brain_share_of_head": float(brain.sum() / max(head.sum(), 1)),
        "dark_share_of_brain": float((inside < 0.5 * np.median(inside)).mean()) if inside.size else float("nan"),
    }
