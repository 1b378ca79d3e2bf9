"""Label files read with bounded memory: the header is checked before a voxel is decoded.

A label upload is hostile until proven otherwise: a 241 KiB `.nii.gz` can declare 384^3 float voxels, a
gzip stream can inflate a thousandfold, an NRRD header can point at another file on the disk. So the
header alone must agree with the case's image (3D, the same voxel count and spacings, an integer voxel
type), the compressed stream must not inflate beyond what the header declares, and the voxels are then
decoded in their own integer type (never widened to float32).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import BinaryIO, Tuple

import nibabel as nib
import nrrd
import numpy as np

from asfda.core.errors import CorruptImage, GeometryMismatch
from asfda.io.volumes import NIFTI_SUFFIXES, NRRD_SUFFIXES, Geometry, native_loader, nrrd_voxel_dtype, volume_suffix

MAX_HEADER_BYTES = 1 << 20  # NIfTI header plus extensions, NRRD text header
CHUNK_BYTES = 1 << 20
NRRD_ENCODINGS = ("raw", "gzip", "gz")
SPACING_RTOL = 1e-3


def _kind(path: Path) -> str:
    suffix = volume_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in NRRD_SUFFIXES:
        return "nrrd"
    raise CorruptImage(f"{path.name}: unsupported label format (use NIfTI .nii/.nii.gz or NRRD .nrrd)")


def _check_dtype(name: str, dtype: np.dtype) -> None:
    if not np.issubdtype(dtype, np.integer):
        raise CorruptImage(
            f"{name}: label voxels must have an integer type (uint8, int16, ...), not {dtype}; save it as a labelmap"
        )


def _check_shape(name: str, shape: Tuple[int, ...], image: Geometry) -> Tuple[int, int, int]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise CorruptImage(f"{name}: expected a 3D label volume, the header declares shape {tuple(shape)}")
    # A multiset: a label may store the image's grid with its axes permuted (reoriented later).
    if sorted(shape) != sorted(image.shape):
        raise GeometryMismatch(f"label shape {tuple(shape)} does not match image shape {image.shape}")
    return tuple(int(s) for s in shape)


def _check_spacing(name: str, spacing: np.ndarray, image: Geometry) -> None:
    if not np.allclose(np.sort(spacing), np.sort(image.spacing), rtol=SPACING_RTOL, atol=SPACING_RTOL):
        raise GeometryMismatch(
            f"label spacing {np.round(spacing, 4).tolist()} does not match image spacing "
            f"{np.round(image.spacing, 4).tolist()}"
        )


def _inflates_within(name: str, handle: BinaryIO, limit: int) -> None:
    """Decompress a gzip stream into nothing, chunk by chunk: refuse one that inflates beyond `limit` bytes."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    total = 0
    try:
        while True:
            chunk = handle.read(CHUNK_BYTES)
            if not chunk:
                break
            while chunk:
                total += len(inflater.decompress(chunk, CHUNK_BYTES))
                if total > limit:
                    raise CorruptImage(
                        f"{name}: the compressed data inflates beyond the {limit} bytes its header declares "
                        "(a decompression bomb?)"
                    )
                chunk = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:  # a further gzip member follows
                    chunk = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    except zlib.error as exc:
        raise CorruptImage(f"{name}: cannot read volume (corrupt compressed data: {exc})") from None
    if not inflater.eof:
        raise CorruptImage(f"{name}: cannot read volume (the compressed data is truncated)")


def _nifti_header(path: Path, image: Geometry) -> None:
    try:
        loaded = nib.load(str(path))  # reads the header only; the voxels stay on disk
        header = loaded.header
        # nibabel moves the header's scaling into the array proxy when it loads an image.
        slope, inter = float(loaded.dataobj.slope), float(loaded.dataobj.inter)
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = header.get_data_dtype()
        zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
        offset = int(header.get_data_offset())
    except Exception as exc:  # nibabel raises many types for a foreign or truncated header
        raise CorruptImage(f"{path.name}: cannot read volume ({type(exc).__name__}: {str(exc)[:160]})") from None
    _check_dtype(path.name, dtype)
    _check_shape(path.name, shape, image)
    if slope != 1.0 or inter != 0.0:
        raise CorruptImage(f"{path.name}: a label must not be scaled (scl_slope {slope}, scl_inter {inter})")
    if offset > MAX_HEADER_BYTES:
        raise CorruptImage(f"{path.name}: the header's voxel offset {offset} is larger than {MAX_HEADER_BYTES} bytes")
    _check_spacing(path.name, zooms, image)
    if volume_suffix(path) == ".nii.gz":
        with open(path, "rb") as handle:
            _inflates_within(path.name, handle, offset + int(np.prod(shape)) * dtype.itemsize + MAX_HEADER_BYTES)


def _nrrd_header(path: Path, image: Geometry) -> None:
    try:
        with open(path, "rb") as handle:
            header = nrrd.read_header(handle)
            data_start = handle.tell()
    except Exception as exc:
        raise CorruptImage(f"{path.name}: cannot read volume ({type(exc).__name__}: {str(exc)[:160]})") from None
    if "data file" in header or "datafile" in header:
        raise CorruptImage(f"{path.name}: a detached NRRD header (data file) is refused; upload one attached .nrrd")
    encoding = str(header.get("encoding", "raw")).lower()
    if encoding not in NRRD_ENCODINGS:
        raise CorruptImage(f"{path.name}: NRRD encoding {encoding!r} is refused (use raw or gzip)")
    try:
        dtype = nrrd_voxel_dtype(header)
    except ValueError as exc:
        raise CorruptImage(f"{path.name}: {exc}") from None
    _check_dtype(path.name, dtype)
    sizes = tuple(int(s) for s in np.atleast_1d(header.get("sizes", ())))
    _check_shape(path.name, sizes, image)
    directions = header.get("space directions")
    if directions is not None:
        rows = np.asarray([d for d in directions if d is not None and not np.isnan(np.asarray(d, float)).all()], float)
        if rows.shape == (3, 3):
            _check_spacing(path.name, np.linalg.norm(rows, axis=1), image)
    declared = int(np.prod(sizes)) * dtype.itemsize + max(int(header.get("byte skip", 0)), 0)
    with open(path, "rb") as handle:
        handle.seek(data_start)
        if encoding == "raw":
            remaining = path.stat().st_size - data_start
            if remaining < declared - max(int(header.get("byte skip", 0)), 0):
                raise CorruptImage(f"{path.name}: cannot read volume (the data is shorter than its header declares)")
        else:
            _inflates_within(path.name, handle, declared)


def read_label_volume(path: Path, image: Geometry) -> Tuple[np.ndarray, np.ndarray]:
    """A label file's voxels (its own integer type) and affine (voxel -> RAS mm), checked header first.

    Args:
        path: a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .seg.nrrd) labelmap.
        image: the geometry of the case's image; the header must agree with it before any decoding.

    Returns:
        (labels, affine); exact grid agreement (orientation, origin) is checked by the caller after
        reorientation.

    Raises:
        CorruptImage, GeometryMismatch: one line naming the file and the first problem.
    """
    path = Path(path)
    if path.is_dir() or not path.is_file():
        raise CorruptImage(f"{path.name}: a label must be one NIfTI or NRRD file")
    kind = _kind(path)
    (_nifti_header if kind == "nifti" else _nrrd_header)(path, image)
    try:
        # The voxels keep their integer type (a 512^3 uint8 label stays 128 MiB, not 512 MiB of float32).
        volume = native_loader(path)(str(path))
    except Exception as exc:  # the readers raise many types for truncated or foreign files
        raise CorruptImage(f"{path.name}: cannot read volume ({type(exc).__name__}: {str(exc)[:160]})") from exc
    if volume.ndim == 4 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    labels = volume.detach().cpu().numpy()
    if not np.issubdtype(labels.dtype, np.integer):
        raise CorruptImage(f"{path.name}: label voxels decoded as {labels.dtype}, not an integer type")
    return labels, volume.affine.detach().cpu().numpy().astype(np.float64)
