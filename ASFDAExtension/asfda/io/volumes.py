"""Reading volumes through MONAI's readers, their geometry, and writing label volumes."""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import nibabel as nib
import nrrd
import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader, NrrdReader, PydicomReader
from monai.transforms import LoadImage

from asfda.core.atomic import atomic_write_with
from asfda.core.errors import CorruptImage, GeometryMismatch
from asfda.io.dicom_series import check_dicom_folder

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".seg.nrrd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES


def volume_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def strip_volume_suffix(path: Path) -> str:
    suffix = volume_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


# MONAI's GPU DICOM decoder plugin warns on every reader construction on machines without it.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")


@functools.cache
def _loader(kind: str, native: Optional[str] = None) -> LoadImage:
    # Built once: LoadImage registers every available reader when constructed. `native`: keep the
    # file's own voxel type (an int16 CT stays int16) instead of float32: "any" where the reader keeps
    # it by itself (dtype None), else the numpy type to convert to (MONAI's NrrdReader casts always).
    if native is None:
        dtype = {}
    else:
        dtype = {"dtype": None if native == "any" else np.dtype(native)}
    reader = {"dicom": PydicomReader, "nifti": NibabelReader, "nrrd": NrrdReader}[kind](**dtype)
    return LoadImage(reader=reader, image_only=True, **({"dtype": None} if native else {}))


# The NRRD format's type names (teem's nrrdTypes), each with its numpy kind and size.
_NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(
        ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"), "i8"
    ),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    "float": "f4",
    "double": "f8",
}


def nrrd_voxel_dtype(header: dict) -> np.dtype:
    """The numpy type of an NRRD header's `type` and `endian`; ValueError for an unknown one."""
    kind = _NRRD_TYPES.get(str(header.get("type", "")).strip().lower())
    if kind is None:
        raise ValueError(f"NRRD type {header.get('type')!r} is not a usable voxel type")
    order = ">" if str(header.get("endian", "little")).lower() == "big" and kind[1] != "1" else "<"
    return np.dtype(order + kind)


def _loader_for(path: Path, native: bool = False) -> LoadImage:
    if path.is_dir():
        return _loader("dicom", "any" if native else None)
    suffix = volume_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _loader("nifti", "any" if native else None)
    if suffix in NRRD_SUFFIXES:
        if not native:
            return _loader("nrrd")
        try:
            dtype = nrrd_voxel_dtype(nrrd.read_header(str(path)))
        except Exception as exc:
            raise CorruptImage(f"{path.name}: cannot read volume ({type(exc).__name__}: {str(exc)[:160]})") from None
        return _loader("nrrd", dtype.str)
    raise CorruptImage(f"{path.name}: unsupported format (use NIfTI .nii/.nii.gz, NRRD .nrrd or a DICOM folder)")


def native_loader(path: Path) -> LoadImage:
    """A loader for `path` that keeps the file's own voxel type."""
    return _loader_for(Path(path), native=True)


def load_volume(path: Path, native_dtype: bool = False) -> MetaTensor:
    """Load a 3D volume (no channel) as a MetaTensor whose `.affine` maps voxels to RAS millimetres.

    Args:
        path: a NIfTI or NRRD file or a DICOM series folder.
        native_dtype: keep the voxel type the reader gives (else float32).

    Returns:
        The volume; NaN or infinite voxels are refused (CorruptImage).
    """
    path = Path(path)
    if not path.exists():
        raise CorruptImage(f"{path}: file not found")
    if path.is_dir():
        check_dicom_folder(path)  # links, strays, mixed series or geometry: refused before any decoding
    loader = _loader_for(path, native_dtype)
    try:
        volume = loader(str(path))
    except Exception as exc:  # the readers raise many types for truncated or foreign files
        raise CorruptImage(f"{path.name}: cannot read volume ({type(exc).__name__}: {str(exc)[:160]})") from exc
    if volume.ndim == 4 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise CorruptImage(f"{path.name}: expected a 3D volume, got shape {tuple(volume.shape)}")
    if not torch.isfinite(volume.as_tensor()).all():
        raise CorruptImage(f"{path.name}: volume contains NaN or infinite values")
    return volume


@dataclass(frozen=True)
class Geometry:
    shape: Tuple[int, int, int]
    affine: np.ndarray  # 4x4 voxel -> RAS mm

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3]

    @classmethod
    def of(cls, volume: MetaTensor) -> Geometry:
        affine = volume.affine.detach().cpu().numpy().astype(np.float64)
        return cls(tuple(int(s) for s in volume.shape[-3:]), affine)


def check_same_geometry(
    image: Geometry,
    label: Geometry,
    spacing_tol: float = 1e-3,
    direction_tol: float = 1e-3,
    origin_tol_mm: float = 1e-2,
) -> None:
    """Raise GeometryMismatch naming the first property that differs beyond tolerance."""
    if image.shape != label.shape:
        raise GeometryMismatch(f"label shape {label.shape} does not match image shape {image.shape}")
    if not np.allclose(image.spacing, label.spacing, rtol=spacing_tol, atol=spacing_tol):
        raise GeometryMismatch(
            f"label spacing {np.round(label.spacing, 4).tolist()} does not match image spacing "
            f"{np.round(image.spacing, 4).tolist()}"
        )
    if not np.allclose(image.direction, label.direction, atol=direction_tol):
        raise GeometryMismatch("label direction (axis orientation) does not match the image")
    if not np.allclose(image.origin, label.origin, atol=max(origin_tol_mm, float(image.spacing.min()) * 0.01)):
        raise GeometryMismatch(
            f"label origin {np.round(label.origin, 3).tolist()} does not match image origin "
            f"{np.round(image.origin, 3).tolist()}"
        )


def save_label_volume(target: Path, labels: np.ndarray, affine: np.ndarray) -> None:
    """Write an integer label volume as NIfTI atomically (temp file, fsync, rename)."""
    data = np.asarray(labels)
    dtype = np.uint8 if data.max(initial=0) < 256 and data.min(initial=0) >= 0 else np.int16
    image = nib.Nifti1Image(data.astype(dtype), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    atomic_write_with(Path(target), lambda tmp: nib.save(image, str(tmp)))


def save_float_volume(target: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    atomic_write_with(Path(target), lambda tmp: nib.save(image, str(tmp)))


def reorient_to(labels: np.ndarray, affine: np.ndarray, target: Geometry) -> Tuple[np.ndarray, np.ndarray]:
    """Permute/flip a label volume's axes so its voxel order matches `target`'s (same world positions).

    Writers differ in how they store the same grid: Slicer, for example, saves a left-handed image's
    labels with one axis flipped. Comparing in world space after reorienting accepts those and still
    rejects labels that really lie elsewhere.
    """
    source = nib.orientations.io_orientation(np.asarray(affine))
    wanted = nib.orientations.io_orientation(target.affine)
    if np.array_equal(source, wanted):
        return labels, np.asarray(affine)
    transform = nib.orientations.ornt_transform(source, wanted)
    reoriented = nib.orientations.apply_orientation(labels, transform)
    new_affine = np.asarray(affine) @ nib.orientations.inv_ornt_aff(transform, labels.shape)
    return np.ascontiguousarray(reoriented), new_affine
