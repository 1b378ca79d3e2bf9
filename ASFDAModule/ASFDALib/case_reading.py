"""Decode a downloaded case's NIfTI files in a background thread, so opening a CT never freezes Slicer.

Reading a 512x512x300 CT (.nii.gz) through an MRML storage node took 4-6 s on the GUI thread, mostly
inflating gzip, and a label histogram 1.7 s more; VTK holds Python's GIL while it reads, so a VTK read in a
thread freezes Slicer's Python just the same. Here SimpleITK (shipped with Slicer; it releases the GIL) or
nibabel decodes the files off the GUI thread, numpy checks the prediction's label values and the display
range, and each volume is written back as a raw NRRD. The GUI thread then reads those through storage nodes
as before (a raw read is little more than a copy) and keeps them, so Slicer knows the nodes hold what was
read. Without either library the GUI thread reads the downloads themselves.
"""

import gzip
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .label_names import foregroundLabels, labelColor

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class VolumeArray:
    voxels: Any  # numpy array in Slicer's order (k, j, i)
    ijkToRas: Any  # 4x4 numpy array


@dataclass
class PreparedCase:
    image: str  # raw NRRD of the image
    segmentation: str  # raw .seg.nrrd of the prediction: one segment per model label, values checked
    windowLevel: tuple  # (low, high) display range of the image
    # The label the case opens with, (k, j, i), and its voxel spacing in that order: what the effort record
    # compares the submitted label to (one byte a voxel; the CT itself is not kept).
    opened: Any = None
    spacingKji: Any = None
    # The image's IJK-to-RAS as the worker serves it: Slicer may flip an axis when it loads the volume (a
    # left-handed grid), and slice numbers from the worker (a sparse rank's requested slices) count on this one.
    imageIjkToRas: Any = None


NRRD_TYPES = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32", "u4": "uint32",
              "f4": "float", "f8": "double"}


def _readWithSimpleITK(path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: a scalar 3D volume is expected")
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    ijkToLps[:3, 3] = image.GetOrigin()
    return VolumeArray(sitk.GetArrayFromImage(image), LPS_TO_RAS @ ijkToLps)


def _readWithNibabel(path):
    import nibabel as nib

    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # a worker may send an uncompressed .nii under any name
        data = gzip.decompress(data)
    image = nib.Nifti1Image.from_bytes(data)
    voxels = np.asanyarray(image.dataobj)
    if voxels.ndim != 3:
        raise ValueError(f"{path}: a scalar 3D volume is expected")
    return VolumeArray(np.ascontiguousarray(voxels.T), np.asarray(image.affine, dtype=float))


def readerAvailable():
    for name in ("SimpleITK", "nibabel"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return None


def readVolumeArray(path, reader=None):
    reader = reader or readerAvailable()
    if reader == "SimpleITK":
        return _readWithSimpleITK(path)
    if reader == "nibabel":
        return _readWithNibabel(path)
    raise RuntimeError("Neither SimpleITK nor nibabel can be imported")


def undeclaredValues(voxels, labels):
    """Label values in ``voxels`` that the model does not declare (background counts as declared)."""
    if voxels.size == 0:
        return []
    if voxels.dtype.kind not in "iu":
        if not np.array_equal(voxels, np.round(voxels)):
            raise ValueError("The prediction holds non-integer values")
        voxels = voxels.astype(np.int64)
    low, high = int(voxels.min()), int(voxels.max())
    declared = {int(v) for v in (labels or {}).values()}
    if low < 0:
        return sorted({v for v in np.unique(voxels) if int(v) not in declared})
    counts = np.bincount(voxels.ravel(), minlength=high + 1)
    return [v for v in range(high + 1) if counts[v] and v not in declared]


def writeRawNrrd(volume, path, extraFields=(), compress=False):
    """``volume`` as an NRRD in LPS space, as Slicer's storage nodes read it; raw unless ``compress`` (gzip)."""
    voxels = volume.voxels
    code = voxels.dtype.str.lstrip("<>|=")
    if code not in NRRD_TYPES:
        voxels, code = voxels.astype(np.float32), "f4"
    ijkToLps = LPS_TO_RAS @ np.asarray(volume.ijkToRas, dtype=float)  # the flip is its own inverse
    directions = " ".join("(" + ",".join(repr(float(x)) for x in ijkToLps[:3, axis]) + ")" for axis in range(3))
    origin = "(" + ",".join(repr(float(x)) for x in ijkToLps[:3, 3]) + ")"
    k, j, i = voxels.shape
    header = (f"NRRD0004\ntype: {NRRD_TYPES[code]}\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {i} {j} {k}\nspace directions: {directions}\nkinds: domain domain domain\n"
              f"endian: little\nencoding: {'gzip' if compress else 'raw'}\nspace origin: {origin}\n")
    header += "".join(f"{key}:={value}\n" for key, value in extraFields) + "\n"
    data = np.ascontiguousarray(voxels, dtype=voxels.dtype.newbyteorder("<"))  # i fastest, as NRRD
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if compress:
            f.write(gzip.compress(data.tobytes(), compresslevel=1))  # a label is mostly zeros: level 1 is plenty
        else:
            data.tofile(f)
    return str(path)


def displayRange(voxels, sample=8):
    """A CT-friendly window: the 0.5th to 99.5th percentile of a voxel sample (Slicer's own is on all)."""
    values = voxels.ravel()[::sample]
    if values.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low, high if high > low else low + 1.0)


def segmentExtent(voxels, value):
    """"i0 i1 j0 j1 k0 k1" around the voxels of ``value`` (the whole grid when it has none).

    Slicer reads a segment with a tight extent about four times faster (0.15 s against 0.6-0.9 s for a
    512x512x300 case), as it scans only that box.
    """
    k, j, i = voxels.shape
    mask = voxels == value
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    if ks.size == 0:
        return f"0 {i - 1} 0 {j - 1} 0 {k - 1}"
    js = np.flatnonzero(mask[ks[0]: ks[-1] + 1].any(axis=(0, 2)))
    is_ = np.flatnonzero(mask[ks[0]: ks[-1] + 1, js[0]: js[-1] + 1].any(axis=(0, 1)))
    return f"{is_[0]} {is_[-1]} {js[0]} {js[-1]} {ks[0]} {ks[-1]}"


def segmentationFields(labels, labelColors, volume):
    """The key/value lines of Slicer's .seg.nrrd: one segment per model label in one shared layer.

    The layout is the one Slicer's segmentation storage node writes (read from a file it wrote, 5.8 to 5.13):
    a label the prediction lacks is an empty segment, so it can be painted under the model's name.
    """
    k, j, i = volume.voxels.shape
    fields = []
    for index, (name, value) in enumerate(foregroundLabels(labels)):
        red, green, blue = labelColor(name, value, labelColors)
        fields += [(f"Segment{index}_Color", f"{red:g} {green:g} {blue:g}"),
                   (f"Segment{index}_ColorAutoGenerated", "0"),
                   (f"Segment{index}_Extent", segmentExtent(volume.voxels, value)),
                   (f"Segment{index}_ID", f"Segment_{value}"), (f"Segment{index}_LabelValue", str(value)),
                   (f"Segment{index}_Layer", "0"), (f"Segment{index}_Name", name),
                   (f"Segment{index}_NameAutoGenerated", "0")]
    geometry = ";".join(repr(float(x)) for x in np.asarray(volume.ijkToRas, dtype=float).ravel())
    geometry += f";0;{i - 1};0;{j - 1};0;{k - 1};"
    fields += [("Segmentation_ContainedRepresentationNames", "Binary labelmap|"),
               ("Segmentation_ConversionParameters", f"Reference image geometry|{geometry}|Reference image&"),
               ("Segmentation_MasterRepresentation", "Binary labelmap"),
               ("Segmentation_ReferenceImageExtentOffset", "0 0 0")]
    return fields


def prepareCase(imagePath, predictionPath, labels, labelColors=None, reader=None) -> Optional[PreparedCase]:
    """Decode, check and rewrite both files next to them (background thread); None without a reader library."""
    reader = reader or readerAvailable()
    if reader is None:
        return None
    image = readVolumeArray(imagePath, reader)
    window = displayRange(image.voxels)
    imageIjkToRas = np.asarray(image.ijkToRas, dtype=float)
    imageNrrd = writeRawNrrd(image, os.path.join(os.path.dirname(imagePath), "image-raw.nrrd"))
    del image  # one CT in memory at a time
    prediction = readVolumeArray(predictionPath, reader)
    unknown = undeclaredValues(prediction.voxels, labels)
    if unknown:
        raise ValueError(f"Prediction contains label values the model does not declare: {unknown}")
    high = max([value for _, value in foregroundLabels(labels)] + [0])
    prediction.voxels = prediction.voxels.astype(np.uint8 if high < 256 else np.uint16, copy=False)
    segmentation = writeRawNrrd(prediction, os.path.join(os.path.dirname(predictionPath), "prediction.seg.nrrd"),
                                segmentationFields(labels, labelColors, prediction))
    spacingKji = np.linalg.norm(np.asarray(prediction.ijkToRas, dtype=float)[:3, :3], axis=0)[::-1]
    return PreparedCase(imageNrrd, segmentation, window, prediction.voxels, tuple(float(x) for x in spacingKji),
                        imageIjkToRas)
