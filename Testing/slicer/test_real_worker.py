"""The Slicer-side client, launcher and MRML conversion against the REAL worker (asfda serve).

A tiny datastore (three 16^3 volumes, a freshly initialised small UNet imported with the
engine's own CLI) keeps this to seconds on CPU. Skipped until the worker package exists.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from ASFDALib.client import WorkerClient, WorkerError
from ASFDALib.launcher import WorkerLauncher, freePort
from ASFDALib.worklist import JobState, Worklist

TOKEN = "test-token"
N_CASES = 5  # enough unlabelled cases left for the sparse tests after the others have submitted theirs


def makeDatastore(root):
    import nibabel as nib
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    affine = np.diag([-2.0, 1.5, 2.5, 1.0])  # non-trivial spacing and a flipped axis
    affine[:3, 3] = [10.0, -20.0, 5.0]
    for i in range(N_CASES):
        volume = rng.normal(0, 1, (16, 16, 16)).astype(np.float32)
        volume[4:12, 4:12, 4:12] += 3.0 + i
        nib.save(nib.Nifti1Image(volume, affine), str(images / f"case{i}.nii.gz"))
    config = {"network": "UNet", "network_args": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
              "labels": {"background": 0, "organ": 1}, "label_colors": {"organ": [0.9, 0.3, 0.2]},
              "roi_size": [16, 16, 16]}
    (root / "config.json").write_text(json.dumps(config))
    subprocess.run([sys.executable, "-m", "asfda", "model", "import", "--datastore", str(root),
                    "--config", str(root / "config.json")], check=True, timeout=120, capture_output=True)
    return root


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    datastore = makeDatastore(tmp_path_factory.mktemp("store"))
    launcher = WorkerLauncher(datastore, freePort(), pythonExecutable=sys.executable, token=TOKEN,
                              device="cpu", logPath=str(datastore.parent / "worker.log"))
    launcher.start()
    try:
        client = WorkerClient(launcher.url, token=TOKEN, timeout=10, longTimeout=120)
        launcher.waitUntilHealthy(lambda: client.health(timeout=2), timeoutS=90)
        yield client
    finally:
        launcher.stop()


def waitForJob(client, job, timeoutS=120):
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline:
        current = client.job(job["job_id"])
        if JobState(current["state"]).finished:
            return current
        time.sleep(0.2)
    raise AssertionError(f"job {job['job_id']} did not finish")


def test_info_cases_and_token(worker):
    info = worker.info()
    assert info["labels"] == {"background": 0, "organ": 1}
    assert info["active_model_version"]
    assert sorted(c["case_id"] for c in worker.cases()) == [f"case{i}" for i in range(N_CASES)]
    with pytest.raises(WorkerError) as error:
        WorkerClient(worker.url, token="wrong").cases()
    assert error.value.status == 401


def test_rank_then_worklist(worker):
    job = worker.rank(budgetK=2)
    finished = waitForJob(worker, job)
    assert finished["state"] == "succeeded", finished.get("error")
    worklist = Worklist()
    worklist.updateFromWorklistReply(worker.worklist())
    worklist.updateFromCasesReply(worker.cases())
    assert len(worklist.rows) == N_CASES
    assert len(worklist.selectedCaseIds) == 2
    assert not worklist.anyStale
    assert worklist.nextCase() == worklist.selectedCaseIds[0]


def test_prediction_to_segmentation_to_uploaded_label(worker, mrmlScene, tmp_path):
    from ASFDALib import segmentation_io as sio

    info = worker.info()
    worker.downloadImage("case1", tmp_path / "image.nii.gz")
    assert worker.infer("case1", tmp_path / "prediction.nii.gz") == info["active_model_version"]
    volume = sio.loadScalarVolume(mrmlScene, tmp_path / "image.nii.gz", "case1")
    segmentation = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "prediction.nii.gz", info["labels"],
                                                    info["label_colors"], volume)
    assert sio.segmentNames(segmentation) == ["organ"]
    # A fresh network predicts anything; paint a known label so the upload is never empty.
    import slicer

    segId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("organ")
    mask = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    mask[5:10, 5:10, 5:10] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segId, volume)
    path = sio.exportSegmentationToFile(mrmlScene, segmentation, volume, info["labels"], str(tmp_path), "case1")
    reply = worker.uploadLabel("case1", path, author="pytest")
    assert reply["tag"] == "final" and reply["label_values"] == [1]
    assert {c["case_id"]: c["status"] for c in worker.cases()}["case1"] == "final"


def test_leases_as_the_module_takes_them(worker):
    """The real worker's lease replies read as the module expects: holder named, Held-by rows, old routes."""
    from ASFDALib.case_lease import CaseLease, lacksLeases
    from ASFDALib.worklist import WorklistRow

    ada, bea = (WorkerClient(worker.url, token=TOKEN, annotator=name) for name in ("Dr. Ada", "Dr. Bea"))
    fetched = []
    adaLease = CaseLease()
    opening = adaLease.open(ada, "case2", lambda client, caseId: fetched.append(caseId) or {"caseId": caseId})
    assert opening.leased and fetched == ["case2"]
    adaLease.opened(opening, loaded=True)
    refused = CaseLease().open(bea, "case2", lambda client, caseId: fetched.append(caseId))
    assert refused.heldBy == "Dr. Ada" and fetched == ["case2"]
    rows = {row.caseId: row for row in map(WorklistRow.fromReply, bea.cases())}
    assert rows["case2"].leasedBy == "Dr. Ada" and rows["case2"].leaseExpiresAt
    assert rows["case0"].leasedBy is None
    assert adaLease.renew() is None
    for client, caseId in adaLease.left():
        client.releaseCase(caseId)
    assert CaseLease().open(bea, "case2", lambda client, caseId: {"caseId": caseId}).leased
    bea.releaseCase("case2")
    with pytest.raises(WorkerError) as unknownRoute:
        bea._json("POST", "/no-such-route")
    with pytest.raises(WorkerError) as unknownCase:
        bea.leaseCase("case9")
    assert lacksLeases(unknownRoute.value) and not lacksLeases(unknownCase.value)


def test_prepared_case_from_the_real_worker(worker, mrmlScene, tmp_path):
    """Issue 20: the worker's own files, decoded in the background, open as Slicer's reader opens them."""
    from ASFDALib import case_reading
    from ASFDALib import segmentation_io as sio

    info = worker.info()
    worker.downloadImage("case2", tmp_path / "image.nii.gz")
    worker.infer("case2", tmp_path / "prediction.nii.gz")
    prepared = case_reading.prepareCase(tmp_path / "image.nii.gz", tmp_path / "prediction.nii.gz", info["labels"],
                                        info["label_colors"], reader="nibabel")
    import slicer

    before = sio.loadScalarVolume(mrmlScene, tmp_path / "image.nii.gz", "before")
    after = sio.loadScalarVolume(mrmlScene, prepared.image, "after", prepared.windowLevel)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(after), slicer.util.arrayFromVolume(before))
    segmentation = sio.loadSegmentationFile(mrmlScene, prepared.segmentation, "label")
    assert sio.segmentNames(segmentation) == ["organ"]
    imported = sio.loadPredictionAsSegmentation(mrmlScene, tmp_path / "prediction.nii.gz", info["labels"],
                                                info["label_colors"], before)
    ours = sio.exportSegmentationToLabelmap(mrmlScene, segmentation, after, info["labels"], allowEmpty=True)
    theirs = sio.exportSegmentationToLabelmap(mrmlScene, imported, before, info["labels"], allowEmpty=True)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ours), slicer.util.arrayFromVolume(theirs))


def test_submitted_label_from_the_background_path_is_accepted(worker, mrmlScene, tmp_path):
    """Issue 20: the gzip NRRD written off the GUI thread passes the real worker's header checks."""
    from ASFDALib import case_reading, label_export
    from ASFDALib import segmentation_io as sio

    info = worker.info()
    worker.downloadImage("case0", tmp_path / "image.nii.gz")
    worker.infer("case0", tmp_path / "prediction.nii.gz")
    prepared = case_reading.prepareCase(tmp_path / "image.nii.gz", tmp_path / "prediction.nii.gz", info["labels"],
                                        info["label_colors"], reader="nibabel")
    volume = sio.loadScalarVolume(mrmlScene, prepared.image, "case0", prepared.windowLevel)
    segmentation = sio.loadSegmentationFile(mrmlScene, prepared.segmentation, "case0 label")
    import slicer

    segId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("organ")
    mask = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    mask[4:9, 4:9, 4:9] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segId, volume)
    pending = label_export.PendingLabel(str(tmp_path / "up" / "case0-label.nrrd"),
                                        label_export.takeSnapshot(segmentation, volume, info["labels"]))
    reply = worker.uploadLabel("case0", pending.finish(), author="pytest")
    assert reply["tag"] == "final" and reply["label_values"] == [1]


def test_sparse_rank_rows_and_masked_upload(worker, tmp_path):
    """A sparse rank's requested slices reach the module's worklist rows; a label goes up with its mask."""
    import nibabel as nib

    finished = waitForJob(worker, worker.rank(budgetK=1, strategy="random", slicesPerVolume=2))
    assert finished["state"] == "succeeded", finished.get("error")
    worklist = Worklist()
    worklist.updateFromWorklistReply(worker.worklist())
    (pick,) = [row for row in worklist.rows if row.selected]
    requested = pick.requestedSlices
    assert requested["axis"] == 2 and len(requested["indices"]) == 2  # spacing (2, 1.5, 2.5): thickest is axis 2
    assert all(row.requestedSlices is None for row in worklist.rows if not row.selected)
    affine = np.diag([-2.0, 1.5, 2.5, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    mask = np.zeros((16, 16, 16), np.uint8)
    mask[:, :, requested["indices"]] = 1  # both requested slices drawn, as whole slices
    label = np.zeros_like(mask)
    label[6:9, 6:9, requested["indices"][0]] = 1
    nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "label.nii.gz"))
    nib.save(nib.Nifti1Image(mask, affine), str(tmp_path / "mask.nii.gz"))
    reply = worker.uploadLabel(pick.caseId, tmp_path / "label.nii.gz", "pytest", maskPath=tmp_path / "mask.nii.gz")
    assert reply["annotated_mask"]["annotated_voxels"] == int(mask.sum())
    assert reply["requested_slices"]["done"] == requested["indices"] and reply["requested_slices"]["coverage"] == 1.0


def test_sparse_submit_from_the_module_is_accepted(worker, mrmlScene, tmp_path):
    """Issue 22: the module's sparse label (done slices only) and its gzip NRRD mask pass the real worker's checks."""
    import slicer
    from ASFDALib import case_reading, label_export
    from ASFDALib import segmentation_io as sio
    from ASFDALib.sparse_slices import PendingSparseLabel, SliceRequest, annotatedMask, onVolumeGrid

    finished = waitForJob(worker, worker.rank(budgetK=1, strategy="random", slicesPerVolume=2))
    assert finished["state"] == "succeeded", finished.get("error")
    worklist = Worklist()
    worklist.updateFromWorklistReply(worker.worklist())
    picks = [row for row in worklist.rows if row.requestedSlices and not row.labeled]
    assert len(picks) == 1, [(r.caseId, r.selected, r.status, r.requestedSlices) for r in worklist.rows]
    (pick,) = picks
    request = SliceRequest.fromReply(pick.requestedSlices)
    info = worker.info()
    worker.downloadImage(pick.caseId, tmp_path / "image.nii.gz")
    worker.infer(pick.caseId, tmp_path / "prediction.nii.gz")
    prepared = case_reading.prepareCase(tmp_path / "image.nii.gz", tmp_path / "prediction.nii.gz", info["labels"],
                                        info["label_colors"], reader="nibabel")
    volume = sio.loadScalarVolume(mrmlScene, prepared.image, pick.caseId, prepared.windowLevel)
    segmentation = sio.loadSegmentationFile(mrmlScene, prepared.segmentation, "label")
    segId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("organ")
    painted = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    painted[...] = 1  # organ everywhere: what lies off the done slice must not reach the worker
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, segmentation, segId, volume)
    snapshot = label_export.takeSnapshot(segmentation, volume, info["labels"])
    # Slicer loads this left-handed image with k flipped: the worker's slice numbers are placed through RAS.
    onVolume, names = onVolumeGrid(request, prepared.imageIjkToRas, snapshot.ijkToRas)
    assert snapshot.ijkToRas[2, 2] < 0 and sorted(names.values()) == list(request.indices)
    done = [index for index, number in names.items() if number == request.indices[0]]
    label = PendingSparseLabel(str(tmp_path / "up" / "c-label.nrrd"), snapshot,
                               annotatedMask(snapshot.shape, onVolume, done), str(tmp_path / "up" / "c-mask.nrrd"))
    reply = worker.uploadLabel(pick.caseId, label.finish(), "pytest", maskPath=label.maskPath)
    assert reply["annotated_mask"]["annotated_voxels"] == 16 * 16
    assert reply["requested_slices"]["done"] == [request.indices[0]] and reply["label_values"] == [1]


def test_rounds_table_from_the_real_workers_report(worker):
    """Issue 22: GET /report as the module reads it; after one adaptation, one round of the labels sent above."""
    from ASFDALib.round_report import roundsOf, roundsTable
    from ASFDALib.worker_session import WorkerSession

    labelled = sorted(c["case_id"] for c in worker.cases() if c["status"] == "final")
    finished = waitForJob(worker, worker.adapt(steps=1, usePseudoLabels=False))
    assert finished["state"] == "succeeded", finished.get("error")
    (only,) = roundsOf(WorkerSession.fetchReport(worker))
    assert only.version == finished["result"]["version"] and only.cases == len(labelled) >= 3
    assert only.minutes is None and only.slices > 0  # sent without effort records: minutes unknown
    assert f"<td align='left'>{only.version}</td>" in roundsTable([only])
