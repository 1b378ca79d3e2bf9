"""A datastore is a folder: images, labels by tag, models and the state database."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from asfda.core.case_ids import validate_case_id
from asfda.core.errors import DatastoreNotFound, DuplicateCase, EmptyLabel, UnknownCase, UnknownLabelValues
from asfda.core.file_identity import file_fingerprint
from asfda.core.names import LabelTag
from asfda.data.image_listing import ImageListing
from asfda.data.state import LabelRecord, StateDB, utc_now
from asfda.io.volumes import (
    Geometry,
    check_same_geometry,
    load_volume,
    reorient_to,
    save_label_volume,
)
from asfda.models.store import ModelStore


def configured_image_source(root: Path):
    """The image source saved in the datastore (dicomweb.json), so every process opening it agrees."""
    if not (Path(root) / "dicomweb.json").exists():
        return None
    from asfda.data.dicomweb.source import load_source

    return load_source(root)


class Datastore:
    def __init__(self, root: Path, create: bool = True, image_source=None):
        self.root = Path(root)
        if not self.root.exists() and not create:
            raise DatastoreNotFound(f"datastore {self.root} does not exist")
        self.images_dir.mkdir(parents=True, exist_ok=True)
        for tag in LabelTag:
            self.label_dir(tag).mkdir(parents=True, exist_ok=True)
        self.models = ModelStore(self.root / "models")
        self.state = StateDB(self.root / "asfda.db")
        self._geometries: Dict[tuple, Geometry] = {}
        self._listing = ImageListing(self.images_dir)  # listed once per change of images/, not once per lookup
        # Pluggable image source (case_ids + image_path), e.g. a PACS (asfda.data.dicomweb); None: images/.
        self.image_source = image_source if image_source is not None else configured_image_source(self.root)

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def label_dir(self, tag: LabelTag) -> Path:
        return self.root / "labels" / LabelTag(tag).value

    def _image_entries(self) -> Dict[str, List[str]]:
        return self._listing.entries()

    def case_ids(self) -> List[str]:
        """Every case with exactly one image (file or DICOM folder), in id order; see `duplicate_cases`."""
        if self.image_source is not None:
            return self.image_source.case_ids()
        return [case for case, names in self._image_entries().items() if len(names) == 1]

    def duplicate_cases(self) -> Dict[str, str]:
        """Case ids that more than one image names (`case01.nii` beside `case01.nii.gz`), each with a one-line
        reason: they are left out of every rank and adapt until one of the files is removed."""
        if self.image_source is not None:
            return {}
        return {case: _duplicate_reason(names) for case, names in self._image_entries().items() if len(names) > 1}

    def image_path(self, case_id: str) -> Path:
        validate_case_id(case_id)
        if self.image_source is not None:
            return self.image_source.image_path(case_id)
        names = self._listing.names_of(case_id)
        if len(names) > 1:
            raise DuplicateCase(f"case {case_id!r}: {_duplicate_reason(names)}")
        if not names:
            raise UnknownCase(f"case {case_id!r} is not in the datastore")
        return self.images_dir / names[0]

    def image_fingerprint(self, case_id: str) -> str:
        """Changes whenever the image's bytes may have changed, `cp -p` included (see asfda.core.file_identity)."""
        if self.image_source is not None and hasattr(self.image_source, "fingerprint"):
            return self.image_source.fingerprint(case_id)
        return file_fingerprint(self.image_path(case_id))

    def label_path(self, case_id: str, tag: LabelTag) -> Path:
        validate_case_id(case_id)
        return self.label_dir(tag) / f"{case_id}.nii.gz"

    def has_label(self, case_id: str, tag: LabelTag) -> bool:
        return self.label_path(case_id, tag).exists()

    def geometry(self, case_id: str) -> Geometry:
        """Read once per image version in this process: saving a label checks it several times."""
        key = (case_id, self.image_fingerprint(case_id))
        found = self._geometries.get(key)
        if found is None:
            found = self._geometries[key] = Geometry.of(load_volume(self.image_path(case_id)))
        return found

    def remember_geometry(self, case_id: str, geometry: Geometry) -> None:
        """Geometry a reader already had in hand (e.g. a DataLoader process), so it is not read again here."""
        self._geometries[(case_id, self.image_fingerprint(case_id))] = geometry

    def save_label(
        self,
        case_id: str,
        tag: LabelTag,
        labels: np.ndarray,
        affine: np.ndarray,
        allowed_values: List[int],
        author: Optional[str] = None,
        model_version: Optional[str] = None,
        extra: Optional[Dict] = None,
        require_foreground: bool = True,
    ) -> LabelRecord:
        """Validate a label against its image and the model's values, then store it atomically.

        A clinician label that people submit goes through `asfda.data.label_submit` (revisions, leases,
        audit); this writes the file and its record only (predictions, pseudo-labels, tests)."""
        labels, image_affine, values = self.checked_label(case_id, labels, affine, allowed_values, require_foreground)
        save_label_volume(self.label_path(case_id, tag), labels, image_affine)
        record = LabelRecord(
            case_id, LabelTag(tag).value, author, utc_now(), model_version, {"label_values": values, **(extra or {})}
        )
        self.state.record_label(record)
        return record

    def checked_label(
        self,
        case_id: str,
        labels: np.ndarray,
        affine: np.ndarray,
        allowed_values: List[int],
        require_foreground: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray, List[int]]:
        """(labels on the image's voxel order, the image's affine, the values present) of a valid label."""
        image_geometry = self.geometry(case_id)
        labels, affine = reorient_to(np.asarray(labels), np.asarray(affine), image_geometry)
        check_same_geometry(image_geometry, Geometry(tuple(labels.shape), np.asarray(affine)))
        values = validate_label_values(labels, allowed_values, require_foreground)
        return labels, image_geometry.affine, values

    def labeled_ids(self) -> List[str]:
        """Cases with a clinician label (labels/final/), in case-id order: the one definition of "labelled"."""
        return [c for c in self.case_ids() if self.has_label(c, LabelTag.FINAL)]

    def case_status(self, case_id: str) -> str:
        if self.has_label(case_id, LabelTag.FINAL):
            return "final"
        if self.has_label(case_id, LabelTag.PSEUDO):
            return "pseudo"
        return "unlabeled"


def _duplicate_reason(names: List[str]) -> str:
    return f"{len(names)} images name this case ({', '.join(names)}): remove all but one"


def validate_label_values(labels: np.ndarray, allowed_values: List[int], require_foreground: bool = True) -> List[int]:
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise UnknownLabelValues("label volume holds non-integer values")
    values = sorted(int(v) for v in np.unique(labels))
    unknown = [v for v in values if v not in allowed_values]
    if unknown:
        raise UnknownLabelValues(f"label values {unknown} are not model labels {sorted(allowed_values)}")
    if require_foreground and values == [0]:
        raise EmptyLabel(
            "label volume is empty (background only); if the case truly shows no structure, submit it as such "
            "(worker: ?no_structure=true, CLI: --no-structure, Slicer: confirm 'without any structure')"
        )
    return values
