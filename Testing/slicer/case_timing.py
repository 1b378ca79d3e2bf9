"""How long opening, submitting and backing up a CT-sized case holds Slicer's GUI thread (issue 20).

Runs on slicer-core's real MRML without Slicer: builds a 512x512x300 int16 CT and a 3-label uint8
prediction as NIfTI files, then times what ASFDALogic does on the GUI thread (and, apart, what it does in
the background) for a case open, a label export for Submit and a backup of unsubmitted edits.

    PYTHONPATH=ASFDAExtension python Testing/slicer/case_timing.py [--shape 300 512 512] [--repeat 3]

Prints one line per step, the median of the repeats in seconds.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "ASFDAModule"
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

LABELS = {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}


def writeCase(folder, shape):
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    k, j, i = shape
    ct = rng.integers(-1000, 1500, size=(i, j, k), dtype=np.int16)  # nibabel's order: i, j, k
    prediction = np.zeros((i, j, k), np.uint8)
    prediction[i // 4: i // 2, j // 4: j // 2, k // 4: k // 2] = 1
    prediction[i // 3: i // 3 + 20, j // 3: j // 3 + 20, k // 3: k // 3 + 10] = 2
    prediction[i // 2: i // 2 + 60, j // 2: j // 2 + 5, :] = 3
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    paths = {"image": os.path.join(folder, "image.nii.gz"), "prediction": os.path.join(folder, "prediction.nii.gz")}
    nib.save(nib.Nifti1Image(ct, affine), paths["image"])
    nib.save(nib.Nifti1Image(prediction, affine), paths["prediction"])
    return paths


def installScene(slicer):
    scene = slicer.vtkMRMLScene()
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLScene(scene)
    volumesLogic = slicer.vtkSlicerVolumesLogic()
    volumesLogic.SetMRMLScene(scene)
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: segmentationsLogic),
        volumes=types.SimpleNamespace(logic=lambda: volumesLogic),
    )
    return scene


def timed(results, name, function):
    start = time.perf_counter()
    value = function()
    results.setdefault(name, []).append(time.perf_counter() - start)
    return value


def openOnce(slicer, files, folder, results):
    """One case open and one label export, each step timed; the old open path last, for comparison."""
    from ASFDALib import case_reading, label_export, segmentation_io

    scene = installScene(slicer)
    prepared = timed(results, "background: decode, check, raw NRRD + .seg.nrrd", lambda: case_reading.prepareCase(
        files["image"], files["prediction"], LABELS))
    volume = timed(results, "GUI: volume (raw read, known window)", lambda: segmentation_io.loadScalarVolume(
        scene, prepared.image, "case", prepared.windowLevel))
    segmentation = timed(results, "GUI: segmentation (raw .seg.nrrd read)", lambda: (
        segmentation_io.loadSegmentationFile(scene, prepared.segmentation, "case label")))
    timed(results, "GUI: storage nodes checked (nothing written)", lambda: segmentation_io.markCaseAsStored(
        scene, volume, segmentation, folder, "case"))
    snapshot = timed(results, "GUI: Submit or scene-close backup, copy of the segments",
                     lambda: label_export.takeSnapshot(segmentation, volume, LABELS))
    timed(results, "background: Submit or scene-close backup, compose + gzip NRRD",
          lambda: label_export.writeLabel(snapshot, os.path.join(folder, "case-label.nrrd")))
    timed(results, "GUI: backup before a question or at exit (copy, compose, gzip NRRD)",
          lambda: label_export.PendingLabel(os.path.join(folder, "backup", "case-label.nrrd"),
                                            label_export.takeSnapshot(segmentation, volume, LABELS)).finish())
    oldVolume = timed(results, "GUI, before: volume from .nii.gz", lambda: segmentation_io.loadScalarVolume(
        scene, files["image"], "old"))
    oldSegmentation = timed(results, "GUI, before: segmentation (histogram, import)", lambda: (
        segmentation_io.loadPredictionAsSegmentation(scene, files["prediction"], LABELS, None, oldVolume)))
    timed(results, "GUI, before: Submit/backup, Slicer's export + .nii.gz", lambda: (
        segmentation_io.exportSegmentationToFile(scene, oldSegmentation, oldVolume, LABELS, folder, "case",
                                                 allowEmpty=True)))
    scene.Clear(True)


def longestStall(files, reader):
    """The longest the main thread waits for Python's GIL (10 ms ticks) while a thread prepares the case.

    A background read that held the GIL (as VTK's readers do) would freeze Slicer's Python as surely as one on
    the GUI thread; this shows the decoding lets it run.
    """
    import threading

    from ASFDALib import case_reading

    done = threading.Event()
    worker = threading.Thread(target=lambda: (case_reading.prepareCase(
        files["image"], files["prediction"], LABELS, reader=reader), done.set()))
    worker.start()
    longest, last = 0.0, time.perf_counter()
    while not done.is_set():
        time.sleep(0.01)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return longest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("K", "J", "I"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import slicer

    results = {}
    with tempfile.TemporaryDirectory(prefix="asfda-timing-") as folder:
        files = writeCase(folder, tuple(args.shape))
        for _ in range(args.repeat):
            openOnce(slicer, files, folder, results)
        stalls = {reader: longestStall(files, reader) for reader in ("SimpleITK", "nibabel")
                  if _importable(reader)}
    shape = "x".join(str(n) for n in reversed(args.shape))
    print(f"case {shape} int16 CT, {len(LABELS) - 1}-label prediction; median of {args.repeat} (s):")
    for name, seconds in results.items():
        print(f"  {name:48s} {statistics.median(seconds):6.2f}")
    for reader, seconds in stalls.items():
        print(f"  {'longest GUI-thread stall while ' + reader + ' decodes':48s} {seconds:6.2f}")
    return 0


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
