"""Case images for download: a NIfTI file streamed from disk, never a volume built in memory per request.

NIfTI images are served as they are. NRRD and DICOM images are converted once into a compressed NIfTI
in their own voxel type (an int16 CT stays int16) under DIR/.image-cache/, keyed by the image's
fingerprint, and that file is streamed; a changed image gets a new file and the old one is removed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from asfda.core.atomic import atomic_write_with
from asfda.core.file_identity import file_fingerprint
from asfda.data.datastore import Datastore
from asfda.io.volumes import load_volume
from asfda.worker.uploads import VOLUME_IO_LOCK

CACHE_DIR = ".image-cache"


def exported_image(store: Datastore, case_id: str, image: Path) -> Path:
    """A compressed NIfTI of the case's NRRD or DICOM image, converted on first use.

    Args:
        store: the datastore (the cache lives under its root).
        case_id: a validated case id.
        image: the case's image path (a file or a DICOM folder).

    Returns:
        The path of the NIfTI file to stream.
    """
    folder = store.root / CACHE_DIR / case_id  # one folder per case: ids may share prefixes
    key = hashlib.sha256(file_fingerprint(image).encode()).hexdigest()[:16]
    target = folder / f"{key}.nii.gz"
    if target.is_file():
        return target
    with VOLUME_IO_LOCK:
        volume = load_volume(image, native_dtype=True)
    data = volume.detach().cpu().numpy()
    if data.dtype == np.float64:
        data = data.astype(np.float32)  # NIfTI viewers expect at most float32; the reader widened it
    nifti = nib.Nifti1Image(data, volume.affine.detach().cpu().numpy().astype(np.float64))
    nifti.set_qform(nifti.affine, code=1)
    nifti.set_sform(nifti.affine, code=1)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(target, lambda tmp: nib.save(nifti, str(tmp)))
    for old in folder.glob("*.nii.gz"):
        if old != target:
            old.unlink(missing_ok=True)
    return target
