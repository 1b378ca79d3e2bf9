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


# ASFDA_HARNESS_RELEASES=1: every harness test also on each release's own framework files (harness/slicer_release.py;
# about four times as long). Without it the per-release tests are test_module_releases.py and test_module_modal.py.
HARNESS_RELEASES = [None, "v5.8.1", "v5.10.0", "v5.12.3"] if os.environ.get("ASFDA_HARNESS_RELEASES") == "1" else [None]


@pytest.fixture(params=HARNESS_RELEASES, ids=lambda tag: tag or "stand-ins")
def harness(request, mrmlScene, tmp_path):
    """The unmodified ASFDA.py widget set up as Slicer would (harness/__init__.py); ``harness.release`` is the
    tag whose framework files it runs on (None: the stand-ins)."""
    slicer = pytest.importorskip("slicer")
    from harness import ModuleHarness, slicer_release, slicer_standins

    tag = request.param
    if tag is not None and slicer_release.releaseFolder(tag) is None:
        pytest.skip(slicer_release.skipReason(tag))
    h = ModuleHarness(slicer, tmp_path / "scenes", release=tag)
    yield h
    h.close()
    slicer_standins.SLICER_VERSION[0] = (5, 10)
