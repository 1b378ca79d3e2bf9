"""Real anatomy shipped inside packages, brought to a common coarse grid.

MNI152 2009c (nonlinear symmetric) T1 with grey and white matter probability maps, as shipped in
the nilearn wheel (nilearn: BSD-3-Clause; the MNI ICBM152 templates: Copyright (C) 1993-2009 Louis
Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University;
redistribution and use permitted with this notice; see docs/data-provenance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import nibabel as nib
import numpy as np
from scipy import ndimage

from asfda.core.errors import ConfigError


@dataclass
class Anatomy:
    name: str
    image: np.ndarray  # (X, Y, Z) float32, intensities scaled to about [0, 1]
    label: np.ndarray  # (X, Y, Z) uint8
    affine: np.ndarray  # voxel -> RAS mm
    labels: Dict[str, int]


def _nilearn_data_dir() -> Path:
    try:
        import nilearn
    except ImportError as exc:
        raise ConfigError("the demo anatomy comes from the nilearn package: pip install 'asfda[demo]'") from exc
    return Path(nilearn.__file__).parent / "datasets" / "data"


def resample_to_spacing(volume: np.ndarray, affine: np.ndarray, spacing: float, order: int):
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    factors = zooms / spacing
    out = ndimage.zoom(volume, factors, order=order)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] / zooms * spacing
    return out, new_affine


def crop_or_pad_to(volume: np.ndarray, shape, affine: np.ndarray, center) -> tuple:
    """Crop/pad `volume` to `shape` around voxel `center`; the affine follows the shift."""
    out = np.zeros(shape, dtype=volume.dtype)
    start = [int(round(c - s / 2)) for c, s in zip(center, shape)]
    src = tuple(slice(max(st, 0), min(st + s, dim)) for st, s, dim in zip(start, shape, volume.shape))
    dst = tuple(slice(sl.start - st, sl.stop - st) for sl, st in zip(src, start))
    out[dst] = volume[src]
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ np.array(start, dtype=float) + affine[:3, 3]
    return out, new_affine


# Radius (mm) of the closing that turns MNI152's GM + WM mask into a whole-brain (BET-style) mask with the
# sulcal CSF, like the masks of the other benchmark sources; 6 mm, chosen against Colin27's ch2bet (same space).
BRAIN_CLOSING_MM = 6.0


def close_mm(mask: np.ndarray, zooms, radius_mm: float) -> np.ndarray:
    """Morphological closing with a ball of `radius_mm` in physical units (exact, via distance transforms)."""
    if radius_mm <= 0:
        return mask.astype(bool)
    pad = int(np.ceil(radius_mm / float(np.min(zooms)))) + 1
    padded = np.pad(mask.astype(bool), pad)
    dilated = ndimage.distance_transform_edt(~padded, sampling=zooms) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=zooms) > radius_mm
    return closed[tuple(slice(pad, -pad) for _ in range(mask.ndim))]


def mni152(
    spacing: float = 4.0, shape=(48, 56, 48), task: str = "brain", closing_mm: float = BRAIN_CLOSING_MM
) -> Anatomy:
    """MNI152 head T1 with a brain mask (task 'brain') or background/GM/WM (task 'tissue').

    The brain mask is whole-brain (BET-style): GM + WM probability > 0.5, closed with a ball of
    `closing_mm` at the native 1 mm grid (so sulcal CSF is inside, whatever the output spacing), holes
    filled, then resampled. `closing_mm=0` gives the former GM + WM definition.
    """
    data = _nilearn_data_dir()
    t1 = nib.load(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    gm_native = nib.load(data / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").get_fdata() / 255.0
    wm_native = nib.load(data / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").get_fdata() / 255.0
    image, affine = resample_to_spacing(t1.get_fdata() / 255.0, t1.affine, spacing, order=1)
    if task == "brain":
        zooms = np.linalg.norm(t1.affine[:3, :3], axis=0)
        brain = ndimage.binary_fill_holes(close_mm(gm_native + wm_native > 0.5, zooms, closing_mm))
        brain, _ = resample_to_spacing(brain.astype(np.float32), t1.affine, spacing, order=1)
        label = ndimage.binary_fill_holes(brain > 0.5).astype(np.uint8)
        labels = {"background": 0, "brain": 1}
    elif task == "tissue":
        gm, _ = resample_to_spacing(gm_native, t1.affine, spacing, order=1)
        wm, _ = resample_to_spacing(wm_native, t1.affine, spacing, order=1)
        tissue = np.stack([np.clip(1.0 - gm - wm, 0, 1), gm, wm])
        label = np.where(gm + wm > 0.5, tissue.argmax(0), 0).astype(np.uint8)
        labels = {"background": 0, "grey_matter": 1, "white_matter": 2}
    else:
        raise ConfigError(f"unknown task {task!r}: use 'brain' or 'tissue'")
    center = ndimage.center_of_mass(label > 0)
    image, new_affine = crop_or_pad_to(image.astype(np.float32), shape, affine, center)
    label, _ = crop_or_pad_to(label, shape, affine, center)
    return Anatomy("mni152", image, label, new_affine, labels)
