"""Hostile DICOM folders (issue 19): links out of the folder, strays, several series, instances that disagree
on geometry. Each is refused in one line before any reader decodes pixels, and `case add` copies nothing."""

from __future__ import annotations

import os

import pydicom
import pytest
from asfda.cli import main
from asfda.core.errors import BadSeries, CorruptImage
from asfda.io.volumes import load_volume
from cli_test_data import imported_datastore, make_setup, write_dicom_series


def _edit(path, **values):
    ds = pydicom.dcmread(str(path))
    for key, value in values.items():
        setattr(ds, key, value)
    ds.save_as(str(path))


def test_a_regular_series_reads(tmp_path):
    assert tuple(load_volume(write_dicom_series(tmp_path / "ok")).shape) == (6, 8, 5)


def test_a_symbolic_link_in_the_folder_is_refused_and_its_target_never_read(tmp_path):
    series = write_dicom_series(tmp_path / "linked")
    secret = tmp_path / "elsewhere.dcm"
    (series / "2.dcm").rename(secret)  # a real instance, outside the folder: a link would pull it in
    os.symlink(secret, series / "2.dcm")
    with pytest.raises(BadSeries, match="2.dcm is a symbolic link"):
        load_volume(series)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ImageOrientationPatient": [0, 1, 0, 0, 0, 1]}, "different orientations"),
        ({"PixelSpacing": [0.5, 0.5]}, "different sizes or pixel spacing"),
        ({"ImagePositionPatient": [0.0, 0.0, 5.0]}, "share one position"),
        ({"ImagePositionPatient": [0.0, 0.0, 30.0]}, "missing slices"),
        ({"SeriesInstanceUID": "1.2.3.4"}, "2 series in one folder"),
    ],
)
def test_instances_that_disagree_are_refused_in_one_line(tmp_path, change, message):
    series = write_dicom_series(tmp_path / "mixed")
    _edit(series / "4.dcm", **change)
    with pytest.raises(BadSeries, match=message) as caught:
        load_volume(series)
    assert "\n" not in str(caught.value)


def test_strays_and_subfolders_are_refused(tmp_path):
    series = write_dicom_series(tmp_path / "stray")
    (series / "notes.txt").write_text("not DICOM")
    with pytest.raises(BadSeries, match="notes.txt is not a readable DICOM file"):
        load_volume(series)
    (series / "notes.txt").unlink()
    (series / "more").mkdir()
    with pytest.raises(BadSeries, match="more is a folder"):
        load_volume(series)


def test_a_truncated_instance_is_a_corrupt_image_not_a_crash(tmp_path):
    series = write_dicom_series(tmp_path / "truncated")
    data = (series / "1.dcm").read_bytes()
    (series / "1.dcm").write_bytes(data[:200])
    with pytest.raises(CorruptImage):
        load_volume(series)


def test_case_add_refuses_a_linked_series_and_copies_nothing(tmp_path, capsys):
    setup = make_setup(tmp_path / "setup", n_cases=1)
    ds = imported_datastore(setup, "ds")
    series = write_dicom_series(tmp_path / "patient9")
    os.symlink(setup.scans / "case0.nii.gz", series / "extra.dcm")
    capsys.readouterr()
    assert main(["case", "add", "--datastore", str(ds), str(series)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "extra.dcm is a symbolic link" in err[0]
    assert not any(p.name.startswith(("patient9", ".patient9")) for p in (ds / "images").iterdir())
