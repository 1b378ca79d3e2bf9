"""Clinician labels <-> DICOM SEG (highdicom), on the source series' own slice grid.

The label is kept locally in the image's voxel order; here it is brought onto the (column, row,
slice) grid of the sorted source instances with the same reorientation the label upload uses, so a
SEG frame lines up with its source instance exactly. Segment numbers follow the model's label values
in ascending order (background excluded); segment labels carry the model's label names.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Sequence

import numpy as np

import asfda
from asfda.io.dicom_series import stack_affine
from asfda.io.volumes import Geometry, check_same_geometry, reorient_to


def _segments(labels: Dict[str, int]) -> Dict[int, str]:
    """label value -> name, background (0) excluded, ascending values."""
    return {value: name for name, value in sorted(labels.items(), key=lambda kv: kv[1]) if value != 0}


def _person_name(annotator: Optional[str]) -> str:
    # PN separates name parts with '^' and groups with '='; a free-text name must contain neither.
    # A trailing '^' says "one component on purpose" (a display name, not family^given).
    return " ".join(re.sub(r"[\^=\\]", " ", annotator or "unknown").split())[:63] + "^"


def build_seg(
    source: Sequence,
    labels: np.ndarray,
    affine: np.ndarray,
    label_names: Dict[str, int],
    annotator: Optional[str],
    model_version: Optional[str],
):
    """A highdicom Segmentation of `labels` (any voxel order, RAS `affine`) over sorted source instances."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    grid = Geometry((int(source[0].Columns), int(source[0].Rows), len(source)), stack_affine(source))
    on_grid, grid_affine = reorient_to(np.asarray(labels), np.asarray(affine), grid)
    check_same_geometry(grid, Geometry(tuple(on_grid.shape), grid_affine))
    segments = _segments(label_names)
    numbers = {value: number for number, value in enumerate(segments, start=1)}
    frames = np.zeros((len(source), int(source[0].Rows), int(source[0].Columns)), dtype=np.uint8)
    for value, number in numbers.items():
        frames[np.transpose(on_grid, (2, 1, 0)) == value] = number
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segments[value][:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="ASFDA", family=codes.DCM.ArtificialIntelligence, version=str(model_version or "unknown")[:64]
            ),
        )
        for value, number in numbers.items()
    ]
    version = str(model_version or "unknown")
    return hd.seg.Segmentation(
        source_images=list(source),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="ASFDA Slicer",
        manufacturer_model_name="asfda",
        software_versions=f"asfda {asfda.__version__}; model {version}"[:64],
        device_serial_number="0",
        content_label="ASFDA_LABEL",
        content_description=f"clinician label, model {version}"[:64],
        content_creator_name=_person_name(annotator),
        series_description=f"ASFDA label by {annotator or 'unknown'} (model {version})"[:64],
        omit_empty_frames=False,
    )


def read_seg(seg_dataset, source: Sequence, label_names: Dict[str, int]) -> tuple:
    """(labels, RAS affine) on the source grid, label values restored from the segment labels."""
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(seg_dataset)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in source],
        combine_segments=True,
        relabel=False,
    )
    by_name = {name: value for value, name in _segments(label_names).items()}
    values = np.zeros(int(pixels.max(initial=0)) + 1, dtype=np.int16)
    for description in seg.SegmentSequence:
        values[int(description.SegmentNumber)] = by_name.get(str(description.SegmentLabel), 0)
    labels = np.transpose(values[pixels], (2, 1, 0))  # (slice, row, column) -> (column, row, slice)
    return labels, stack_affine(source)
