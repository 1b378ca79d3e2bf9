"""Hostile label files against a real worker (issue 19): each refused with a one-line 4xx, nothing stored,
and the API process's resident memory stays bounded (printed; docs/worker.md quotes the figure).
"""

from __future__ import annotations

import gzip
import threading
import zlib

import nibabel as nib
import nrrd
import numpy as np
import psutil
import pytest
from asfda.worker.sample import sample_affine
from worker_helpers import WorkerProcess, upload

RSS_BOUND_MB = 200
BOMB_MB = 400


@pytest.fixture(scope="module")
def worker(sample):
    process = WorkerProcess(sample.datastore).wait_healthy()
    yield process
    process.stop()


def _nifti(path, data, **header):
    image = nib.Nifti1Image(data, sample_affine())
    for key, value in header.items():
        image.header[key] = value
    nib.save(image, str(path))
    return path


def _declared_only(path, shape, dtype):
    """A .nii.gz whose header declares `shape` of `dtype` and whose data is zeros (tiny once compressed)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(sample_affine(), code=1)
    raw = header.binaryblock + b"\0" * 4
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(raw)
        zeros = b"\0" * (1 << 22)
        left = int(np.prod(shape)) * np.dtype(dtype).itemsize
        while left > 0:
            out.write(zeros[: min(left, len(zeros))])
            left -= len(zeros)
    return path


def _scaled(path, truth):
    """A label whose header scales its voxels (scl_slope 2): decoded, it would be float."""
    header = nib.Nifti1Header()
    header.set_data_shape(truth.shape)
    header.set_data_dtype(np.int16)
    header.set_qform(sample_affine(), code=1)
    header.set_sform(sample_affine(), code=1)
    header["scl_slope"], header["scl_inter"] = 2.0, 0.0
    header["vox_offset"] = 352
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + truth.astype("<i2").tobytes(order="F")))
    return path


def _gzip_zeros(megabytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    return b"".join([packer.compress(block) for _ in range(megabytes)] + [packer.flush()])


def _nrrd_bomb(path, shape):
    """An NRRD with a correct header whose gzip data inflates to BOMB_MB (the header declares a few KiB)."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ sample_affine()[:3]
    header = (
        "NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {' '.join(str(s) for s in shape)}\n"
        f"space directions: {' '.join('(' + ','.join(repr(float(v)) for v in col) + ')' for col in lps[:, :3].T)}\n"
        f"space origin: ({','.join(repr(float(v)) for v in lps[:, 3])})\nencoding: gzip\n\n"
    )
    path.write_bytes(header.encode() + _gzip_zeros(BOMB_MB))
    return path


def hostile_files(tmp_path, truth, image_path, good_label):
    shape = truth.shape
    files = {
        # The review's file: 384^3 float32 declared in ~240 KiB.
        "384^3 float32": (_declared_only(tmp_path / "f384.nii.gz", (384,) * 3, np.float32), "integer type"),
        "384^3 uint8": (_declared_only(tmp_path / "u384.nii.gz", (384,) * 3, np.uint8), "shape"),
        "absurd dims": (_declared_only(tmp_path / "absurd.nii.gz", (32767, 32767, 1), np.uint8), "shape"),
        "5D": (_nifti(tmp_path / "5d.nii.gz", np.zeros((*shape, 2, 2), np.uint8)), "3D"),
        "NaN": (_nifti(tmp_path / "nan.nii.gz", np.full(shape, np.nan, np.float32)), "integer type"),
        "inf": (_nifti(tmp_path / "inf.nii.gz", np.full(shape, np.inf, np.float64)), "integer type"),
        "complex": (_nifti(tmp_path / "c.nii.gz", np.zeros(shape, np.complex64)), "integer type"),
        "scaled": (_scaled(tmp_path / "sc.nii.gz", truth), "scaled"),
        "spacing": (None, "spacing"),
        "NRRD bomb": (_nrrd_bomb(tmp_path / "bomb.nrrd", shape[::-1]), "inflates"),
        "NRRD detached": (None, "detached"),
        "NRRD ascii": (None, "encoding"),
        "truncated gzip": (None, "truncated"),
        "NIfTI bomb": (None, "inflates"),
    }
    spaced = nib.Nifti1Image(truth, np.diag([3.0, 3.0, 3.0, 1.0]))
    nib.save(spaced, str(tmp_path / "spacing.nii.gz"))
    files["spacing"] = (tmp_path / "spacing.nii.gz", "spacing")
    detached = tmp_path / "detached.nrrd"
    detached.write_text(
        f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {' '.join(map(str, shape[::-1]))}\n"
        f"encoding: raw\ndata file: {image_path}\n\n"
    )
    files["NRRD detached"] = (detached, "detached")
    ascii_nrrd = tmp_path / "ascii.nrrd"
    nrrd.write(str(ascii_nrrd), truth, {"encoding": "ascii"})
    files["NRRD ascii"] = (ascii_nrrd, "encoding")
    whole = good_label.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    files["truncated gzip"] = (cut, "truncated")
    bomb = tmp_path / "nbomb.nii.gz"
    bomb.write_bytes(gzip.compress(gzip.decompress(whole)) + _gzip_zeros(BOMB_MB))  # a second gzip member
    files["NIfTI bomb"] = (bomb, "inflates")
    return files


class PeakRss:
    """Samples a process's resident set size every 10 ms in a thread; `peak` in bytes."""

    def __init__(self, pid: int):
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_hostile_label_files_are_refused_and_memory_stays_bounded(worker, sample, tmp_path):
    client = worker.client
    files = hostile_files(
        tmp_path, sample.truth["case01"], sample.datastore / "images" / "case01.nii.gz", sample.labels["case01"]
    )
    # Warm up (imports, readers, the image's geometry) with a refused upload, then measure from idle.
    assert upload(client, "case01", files["spacing"][0]).status_code == 422
    idle = psutil.Process(worker.process.pid).memory_info().rss
    with PeakRss(worker.process.pid) as rss:
        for name, (path, reason) in files.items():
            reply = upload(client, "case01", path)
            assert 400 <= reply.status_code < 500, (name, reply.status_code, reply.text)
            detail = reply.json()["detail"]
            assert isinstance(detail, str) and "\n" not in detail and reason in detail, (name, detail)
    grown_mb = (rss.peak - idle) / 2**20
    print(
        f"\nAPI process resident memory: idle {idle / 2**20:.0f} MiB, peak {rss.peak / 2**20:.0f} MiB "
        f"while {len(files)} hostile label files were uploaded (+{grown_mb:.0f} MiB)"
    )
    assert grown_mb < RSS_BOUND_MB
    assert client.get("/cases").json()[1]["status"] == "unlabeled"  # nothing refused was stored
    assert not (sample.datastore / "labels" / "final" / "case01.nii.gz").exists()
    assert not list((sample.datastore / ".uploads").iterdir())
    # The worker still takes a good label.
    assert upload(client, "case01", sample.labels["case01"]).status_code == 200
