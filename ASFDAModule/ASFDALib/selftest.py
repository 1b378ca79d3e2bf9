"""What ``ASFDATest`` runs inside Slicer.

A light case round trip (seconds, no worker) always runs. The whole loop against a real local
worker on a tiny demo datastore (CPU, several minutes) runs only when asked (environment variable
``ASFDA_TEST_FULL_LOOP=1``): it builds a demo datastore, which needs the demo extras (nilearn,
matplotlib) in the worker's Python, and can block for many minutes, which extension build machines
do not allow.
"""

import os
import shutil
import subprocess
import tempfile
import time

from ASFDALib import dependencies, segmentation_io
from ASFDALib.launcher import slicerPythonExecutable
from ASFDALib.worklist import JobState

FULL_LOOP_VARIABLE = "ASFDA_TEST_FULL_LOOP"


def fullLoopRequested(environ=None):
    return (environ if environ is not None else os.environ).get(FULL_LOOP_VARIABLE, "") not in ("", "0")


def waitFor(condition, timeoutS, message, processEvents=None):
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if processEvents is not None:
            processEvents()
        time.sleep(0.2)
    raise AssertionError(message)


def waitForJob(client, job, timeoutS=600, processEvents=None):
    def finishedJob():
        current = client.job(job["job_id"])
        return current if JobState(current["state"]).finished else None

    finished = waitFor(finishedJob, timeoutS, f"{job['kind']} job did not finish", processEvents)
    if finished["state"] != "succeeded":
        raise AssertionError(f"{job['kind']} job {finished['state']}: {finished.get('error')}")
    return finished


def runFullLoop(test, logic, processEvents=None):
    """Rank, load a case, submit, adapt and roll back; ``test`` is the unittest.TestCase reporting."""
    python = os.environ.get("ASFDA_TEST_PYTHON", "")
    workDir = tempfile.mkdtemp(prefix="asfda-test-")
    env = dict(os.environ)
    session = logic.session
    env["PYTHONPATH"] = os.pathsep.join(dependencies.workerPythonPath(logic.moduleDir()))
    test.delayDisplay("Building a tiny demo datastore")
    subprocess.run(
        [python or slicerPythonExecutable(), "-m", "asfda", "demo", "--quick", "--out", workDir],
        check=True,
        timeout=900,
        env=env,
    )
    datastore = os.path.join(workDir, "datastore")
    test.delayDisplay("Starting a local worker")
    session.startLocalWorker(datastore, 18765 + os.getpid() % 1000, python, "cpu")
    try:
        session.setConnection(*session.waitForLocalWorker(timeoutS=300))
        client = session.client
        test.assertTrue(session.labels)
        versionBefore = session.info["active_model_version"]

        test.delayDisplay("Ranking")
        waitForJob(client, client.rank(2), processEvents=processEvents)
        session.updateWorklist(client.worklist(), client.cases())
        caseId = session.worklist.nextCase()
        test.assertIsNotNone(caseId)

        test.delayDisplay(f"Loading {caseId} with its prediction")
        parameterNode = logic.getParameterNode()
        volume, segmentation = logic.loadCase(session.files.fetchCase(client, caseId), parameterNode)
        test.assertEqual(parameterNode.currentCaseId, caseId)

        test.delayDisplay("Submitting the (uncorrected) prediction as the label")
        path = session.files.exportLabel(segmentation, volume, caseId, allowEmpty=True)
        test.assertEqual(client.uploadLabel(caseId, path, "ASFDATest")["tag"], "final")

        test.delayDisplay("Adapting")
        versionsBefore = len(client.models())
        waitForJob(client, client.adapt(steps=2, usePseudoLabels=True), processEvents=processEvents)
        models = client.models()
        active = [m["version"] for m in models if m["active"]]
        test.assertEqual(len(models), versionsBefore + 1)
        test.assertNotEqual(active, [versionBefore])

        test.delayDisplay("Rolling back")
        test.assertEqual(client.activateModel(versionBefore)["active_model_version"], versionBefore)
    finally:
        session.stopLocalWorker()
        shutil.rmtree(workDir, ignore_errors=True)


def runCaseRoundTrip(test, logic, slicer):
    """A prediction file becomes a segmentation with one segment per label and comes back unchanged."""
    import numpy as np

    test.delayDisplay("Loading a synthetic case and submitting it back")
    logic.session.info = {"labels": {"background": 0, "tumor": 1, "edema": 2}}
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[1:3, 2:4, 3:5] = 1
    labels[4, 5, 6] = 2
    scene = slicer.mrmlScene
    paths = {}
    for key, nodeClass in (("image", "vtkMRMLScalarVolumeNode"), ("prediction", "vtkMRMLLabelMapVolumeNode")):
        node = slicer.util.addVolumeFromArray(labels, name=f"ASFDATest {key}", nodeClassName=nodeClass)
        paths[key] = segmentation_io.saveLabelmap(scene, node, os.path.join(logic.session.workDir, f"{key}.nrrd"))
        segmentation_io.removeNodeWithDisplayNodes(scene, node)
    parameterNode = logic.getParameterNode()
    volume, segmentation = logic.loadCase(dict(paths, caseId="synthetic"), parameterNode)
    test.assertEqual(parameterNode.currentCaseId, "synthetic")
    test.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 2)
    path = logic.session.files.exportLabel(segmentation, volume, "synthetic")
    roundTrip = segmentation_io.loadScalarVolume(scene, path, "ASFDATest round trip")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(roundTrip), labels)
