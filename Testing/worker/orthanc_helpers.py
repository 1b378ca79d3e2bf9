"""A real Orthanc (Debian's orthanc + orthanc-dicomweb) on a free loopback port, and tiny CT series for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from worker_helpers import free_port, wait_for

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
STOP_WAIT_S = 5.0
# Rejects every incoming SEG while the flag file exists: a PACS that refuses our write-back, for real.
REJECT_SEG_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.Modality == 'SEG' then
    local flag = io.open('{flag}', 'r')
    if flag ~= nil then flag:close() return false end
  end
  return true
end
"""


def require_orthanc() -> None:
    """Orthanc is installed by scripts/setup.sh; without it CI fails loudly and a laptop skips."""
    if os.path.exists(ORTHANC) and os.path.exists(DICOMWEB_PLUGIN):
        return
    message = (
        f"{ORTHANC} with {DICOMWEB_PLUGIN} is missing: `apt-get install -y orthanc orthanc-dicomweb` "
        "(scripts/setup.sh does it when run as root on Debian/Ubuntu)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class OrthancProcess:
    def __init__(self, folder: Path):
        require_orthanc()
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = self.url + "/dicom-web"
        self.reject_flag = folder / "reject-seg"
        store = folder / "store"
        store.mkdir(parents=True, exist_ok=True)
        (folder / "filter.lua").write_text(REJECT_SEG_LUA.replace("{flag}", str(self.reject_flag)))
        config = {
            "Name": "asfda-test",
            "StorageDirectory": str(store),
            "IndexDirectory": str(store),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "LuaScripts": [str(folder / "filter.lua")],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "ab")
        self.process = subprocess.Popen(
            [ORTHANC, str(folder / "orthanc.json")], stdout=self.log, stderr=self.log, start_new_session=True
        )
        wait_for(self._ready, 60, "Orthanc to answer /system", interval=0.2)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-1500:]}")
        try:
            return httpx.get(self.url + "/system", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def upload(self, datasets: List[pydicom.Dataset]) -> None:
        for ds in datasets:
            path = self.folder / "upload.dcm"
            ds.save_as(path, enforce_file_format=True)
            reply = httpx.post(self.url + "/instances", content=path.read_bytes(), timeout=30)
            assert reply.status_code == 200, reply.text

    def delete_series(self, series_uid: str) -> None:
        found = httpx.post(self.url + "/tools/lookup", content=series_uid, timeout=30).json()
        orthanc_id = next(item["ID"] for item in found if item["Type"] == "Series")
        assert httpx.delete(f"{self.url}/series/{orthanc_id}", timeout=30).status_code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT_S)  # Orthanc may ignore SIGTERM for a while
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_WAIT_S)
        self.log.close()
        shutil.rmtree(self.folder / "store", ignore_errors=True)


def ct_series(
    volume: np.ndarray,
    affine: np.ndarray,
    description: str,
    patient: str = "ANON001",
    study_uid: Optional[str] = None,
) -> List[pydicom.Dataset]:
    """One CT slice per volume[:, :, k] (a RAS voxel->mm `affine`), int16 HU with a rescale."""
    study_uid, series_uid, frame_uid = study_uid or generate_uid(), generate_uid(), generate_uid()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    column_step, row_step = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = np.concatenate([lps[:3, 0] / column_step, lps[:3, 1] / row_step])
    hu = np.round(volume * 1000.0 - 500.0).astype(np.int16)
    slices = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", patient, "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "asfda-test"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.SeriesDescription = description
        ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
        ds.ImagePositionPatient = [round(float(v), 4) for v in lps[:3, 3] + lps[:3, 2] * k]
        ds.PixelSpacing = [round(float(row_step), 4), round(float(column_step), 4)]
        ds.SliceThickness = round(float(np.linalg.norm(lps[:3, 2])), 4)
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()
        slices.append(ds)
    return slices
