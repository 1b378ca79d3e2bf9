"""Fixtures for the Slicer-side tests: real MRML from slicer-core, no Slicer application."""

import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "ASFDAModule"

# ASFDALib is imported the way Slicer imports it: from the module folder on sys.path.
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def mrmlScene():
    """A fresh scene published as ``slicer.mrmlScene`` so ``slicer.util`` helpers find it."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLScene(scene)
    volumesLogic = slicer.vtkSlicerVolumesLogic()
    volumesLogic.SetMRMLScene(scene)
    # slicer.util reaches module logics through slicer.modules; only the ones it needs are stood in.
    modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: segmentationsLogic),
        volumes=types.SimpleNamespace(logic=lambda: volumesLogic),
    )
    saved = {name: getattr(slicer, name, None) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = scene
    slicer.modules = modules
    yield scene
    scene.Clear(True)
    for name, value in saved.items():
        if value is None:
            delattr(slicer, name)
        else:
            setattr(slicer, name, value)


@pytest.fixture
def worker(tmp_path):
    """A scripted worker over real HTTP on loopback (harness/fake_worker.py)."""
    from harness.fake_worker import FakeWorker

    with FakeWorker(tmp_path / "datastore") as w:
        yield w


@pytest.fixture
def harness(mrmlScene, tmp_path):
    """The unmodified ASFDA.py widget set up as Slicer would (harness/__init__.py)."""
    slicer = pytest.importorskip("slicer")
    from harness import ModuleHarness, slicer_standins

    h = ModuleHarness(slicer, tmp_path / "scenes")
    yield h
    h.close()
    slicer_standins.SLICER_VERSION[0] = (5, 10)
