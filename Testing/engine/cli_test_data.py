"""A tiny researcher's setup on disk for the CLI tests: scans, reference labels, model.json and weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from asfda.cli import main
from asfda.models.networks import build_network
from engine_helpers import blob, shifted, tiny_config, write_nifti

AFFINE = np.diag([1.5, 1.0, 2.0, 1.0])
N_CASES = 5


@dataclass
class Setup:
    root: Path
    scans: Path
    refs: Path
    config: Path
    weights: Path
    truth: Dict[str, np.ndarray]

    def datastore(self, name: str = "ds") -> Path:
        return self.root / name


def make_setup(root: Path, n_cases: int = N_CASES) -> Setup:
    scans, refs = root / "scans", root / "reference-labels"
    scans.mkdir(parents=True)
    refs.mkdir()
    truth = {}
    for i in range(n_cases):
        label, image = blob(i)
        write_nifti(scans / f"case{i}.nii.gz", shifted(image, label, i, 0.3), AFFINE)
        write_nifti(refs / f"case{i}.nii.gz", label, AFFINE)
        truth[f"case{i}"] = label
    config = tiny_config()
    (root / "model.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.manual_seed(0)
    torch.save(build_network(config).state_dict(), root / "weights.pt")
    return Setup(root, scans, refs, root / "model.json", root / "weights.pt", truth)


def imported_datastore(setup: Setup, name: str = "ds", config: Optional[Path] = None) -> Path:
    """`model import` (the setup's model.json, or `config` with the setup's weights) and `case add` of its scans."""
    ds = setup.datastore(name)
    model = str(config or setup.config)
    assert main(["model", "import", "--datastore", str(ds), "--config", model, "--weights", str(setup.weights)]) == 0
    assert main(["case", "add", "--datastore", str(ds), str(setup.scans)]) == 0
    return ds


def write_dicom_series(folder: Path, slices: int = 5) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    for z in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{z}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series_uid, study_uid, "CT"
        ds.Rows, ds.Columns, ds.PixelSpacing, ds.SliceThickness = 8, 6, [0.8, 0.8], 2.5
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 2.5 * z], [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber, ds.SamplesPerPixel, ds.PhotometricInterpretation = z + 1, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = (np.full((8, 6), z * 10, dtype=np.int16)).tobytes()
        ds.save_as(str(folder / f"{z}.dcm"), enforce_file_format=True)
    return folder
