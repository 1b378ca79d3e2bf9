"""The unmodified ASFDA.py widget, driven like a person would, on real MRML with a scripted worker.

See harness/ for what stands in for Slicer's Qt layer and scripted-module framework. Each test names the
finding of issue 11 it guards.
"""

import os

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from harness import ModuleHarness, pythonqt, slicer_standins  # noqa: E402
from harness.fake_worker import FakeWorker  # noqa: E402


@pytest.fixture
def worker(tmp_path):
    with FakeWorker(tmp_path / "datastore") as w:
        yield w


@pytest.fixture
def harness(mrmlScene, tmp_path):
    h = ModuleHarness(slicer, tmp_path / "scenes")
    yield h
    h.close()
    slicer_standins.SLICER_VERSION[0] = (5, 10)


def test_smoke(harness, worker):
    harness.enter()
    harness.connect(worker.url)
    assert harness.slotErrors == []
