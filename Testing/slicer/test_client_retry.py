"""Issue 18 (left out there): a worker whose upload/download slots are all taken answers 503 with Retry-After.

The client waits as told and sends again, a bounded number of times with a capped wait, off the GUI thread
only, and only requests that cannot do a thing twice: safe ones, and uploads guarded by If-Match /
If-None-Match. Against the scripted worker over real HTTP (harness/fake_worker.py).
"""

import gzip
import threading

import nibabel as nib
import numpy as np
import pytest
from ASFDALib import client as clientModule
from ASFDALib.client import WorkerClient, WorkerError, mayRetry, retryAfterSeconds


def inBackground(function):
    """Run ``function`` in a thread, as the module runs every worker call; its result or its error."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except Exception as error:  # handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def ada(worker):
    client = WorkerClient(worker.url, annotator="Dr. Ada")
    client.waits = []
    client.sleep = client.waits.append  # no real waiting in tests; the waits asked for are recorded
    return client


@pytest.fixture
def labelFile(tmp_path):
    path = tmp_path / "label.nii.gz"
    path.write_bytes(gzip.compress(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)).to_bytes()))
    return path


def requestsTo(worker, method, path):
    return [r for r in worker.requests if r == (method, path)]


def test_a_download_waits_as_told_and_succeeds(worker, ada, tmp_path):
    worker.busyPaths["/cases/case-a/image"], worker.retryAfter = 2, "1"
    inBackground(lambda: ada.downloadImage("case-a", str(tmp_path / "image.nii.gz")))
    assert (tmp_path / "image.nii.gz").stat().st_size > 0
    assert len(requestsTo(worker, "GET", "/cases/case-a/image")) == 3 and ada.waits == [1.0, 1.0]


def test_a_conditional_upload_is_sent_again_and_stored_once(worker, ada, labelFile):
    worker.busyPaths["/cases/case-a/label"] = 1
    reply = inBackground(lambda: ada.uploadLabel("case-a", str(labelFile), revision=""))  # If-None-Match: *
    assert reply["revision"] == "r0001" and worker.revisions["case-a"] == ("r0001", "Dr. Ada")
    assert [h[:2] for h in worker.labelHeaders] == [(None, "*")]  # the refused try never reached the label route
    assert len(requestsTo(worker, "PUT", "/cases/case-a/label")) == 2


def test_an_unconditional_upload_or_a_job_request_is_not_sent_twice(worker, ada, labelFile):
    worker.busyPaths["/cases/case-a/label"] = 1
    with pytest.raises(WorkerError) as refused:
        inBackground(lambda: ada.uploadLabel("case-a", str(labelFile)))  # revision unknown: no If-Match
    assert refused.value.status == 503 and "busy" in str(refused.value)
    assert "case-a" not in worker.labels and len(requestsTo(worker, "PUT", "/cases/case-a/label")) == 1
    worker.busyPaths["/rank"] = 1
    with pytest.raises(WorkerError):
        inBackground(lambda: ada.rank(2))
    assert len(requestsTo(worker, "POST", "/rank")) == 1 and ada.waits == []


def test_retries_are_bounded_and_the_wait_capped(worker, ada):
    worker.busyPaths["/jobs"], worker.retryAfter = 100, "3600"
    with pytest.raises(WorkerError) as busy:
        inBackground(ada.jobs)
    assert busy.value.status == 503
    assert len(requestsTo(worker, "GET", "/jobs")) == clientModule.RETRIES_ON_BUSY + 1
    assert ada.waits == [clientModule.MAX_RETRY_WAIT_S] * clientModule.RETRIES_ON_BUSY


def test_the_gui_thread_never_waits(worker, ada):
    worker.busyPaths["/jobs"] = 1
    with pytest.raises(WorkerError):
        ada.jobs()  # pytest runs tests on the main thread, Slicer's GUI thread
    assert ada.waits == [] and len(requestsTo(worker, "GET", "/jobs")) == 1


def test_a_503_without_retry_after_is_reported_at_once(worker, ada):
    worker.failPaths.add("/jobs")  # a 500 is no "busy": reported as it is
    with pytest.raises(WorkerError) as failed:
        inBackground(ada.jobs)
    assert failed.value.status == 500 and ada.waits == []


def test_retry_after_and_which_requests_may_be_sent_again():
    assert retryAfterSeconds("2") == 2.0
    assert retryAfterSeconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert retryAfterSeconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # already past
    assert retryAfterSeconds("soon") is None and retryAfterSeconds(None) is None and retryAfterSeconds("-1") is None
    assert mayRetry("GET", {}) and mayRetry("DELETE", {})
    assert mayRetry("PUT", {"If-Match": '"r0002"'}) and mayRetry("PUT", {"If-None-Match": "*"})
    assert not mayRetry("PUT", {}) and not mayRetry("POST", {"Content-Type": "application/json"})
