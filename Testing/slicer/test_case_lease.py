"""ASFDALib.case_lease against the scripted worker over real HTTP: names, tokens, renewal, hand-over."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from ASFDALib import case_lease
from ASFDALib.case_lease import CaseLease
from ASFDALib.client import CLIENT_HEADER, WorkerClient, WorkerError


def fetch(client, caseId, revision=None):
    return {"caseId": caseId, "revision": revision}


def failingFetch(client, caseId):
    raise OSError("disk full")


@pytest.fixture
def clients(worker):
    return [WorkerClient(worker.url, annotator=name) for name in ("Dr. Ada", "Dr. Bea")]


def test_names_and_tokens():
    assert case_lease.cleanAnnotatorName("  Dr.\tAda  Lovelace ") == "Dr. Ada Lovelace"
    for bad in ("", "   ", "a" * 101, "Ada\x07"):
        with pytest.raises(ValueError):
            case_lease.cleanAnnotatorName(bad)
    for url in ("http://127.0.0.1:8765", "localhost:8765", "http://[::1]:8765"):
        case_lease.checkToken(url, "")
    with pytest.raises(ValueError, match="your own annotator token"):
        case_lease.checkToken("http://10.1.2.3:8765", " ")
    case_lease.checkToken("https://gpu.hospital.example", "tok")
    assert case_lease.holderOf("HTTP 409: case 'c' is leased to Dr. Bea until 2030-01-01T00:00:00+00:00") == ("Dr. Bea")
    assert case_lease.holderOf("HTTP 409: case 'c' is leased to Dr. Bea, not to Dr. Ada") == "Dr. Bea"
    assert case_lease.holderOf("HTTP 500: boom") is None


def test_a_failed_download_gives_the_lease_back(worker, clients):
    ada, _ = clients
    with pytest.raises(OSError):
        CaseLease().open(ada, "case-a", failingFetch)
    assert worker.leases == {}


def test_renewal_reports_a_lost_lease(worker, clients):
    ada, _ = clients
    lease = CaseLease()
    lease.opened(lease.open(ada, "case-a", fetch), loaded=True)
    assert lease.renew() is None and worker.leases == {"case-a": "Dr. Ada"}
    worker.leases["case-a"] = "Dr. Bea"  # Ada's lease expired and Bea took the case
    assert lease.renew() == "Dr. Bea"



def test_a_renewal_in_flight_when_the_case_is_left_does_not_hold_it_again(worker, clients):
    """Issue 20: the poller's renewal landed after the GUI thread gave the lease back and held it 30 minutes."""
    ada, _ = clients
    lease = CaseLease()
    lease.opened(lease.open(ada, "case-a", fetch), loaded=True)
    grant = ada.leaseCase

    def leftWhileRenewing(caseId):
        for client, heldCase in lease.left():  # the clinician moved on; the give-back runs first
            case_lease.release(client, heldCase)
        assert worker.leases == {}
        return grant(caseId)  # then the renewal reaches the worker

    ada.leaseCase = leftWhileRenewing
    assert lease.renew() is None
    assert worker.leases == {}

def test_a_new_name_hands_the_open_case_over(worker, clients):
    ada, _ = clients
    lease = CaseLease()
    lease.opened(lease.open(ada, "case-a", fetch), loaded=True)
    lease.reconnected(WorkerClient(worker.url, annotator="Dr. Ada"))  # same person: nothing given back
    assert lease.renew() is None and worker.leases == {"case-a": "Dr. Ada"}
    lease.reconnected(WorkerClient(worker.url, annotator="Dr. Cy"))
    assert lease.renew() is None and worker.leases == {"case-a": "Dr. Cy"}


def test_a_case_not_loaded_is_given_back_and_the_open_one_kept(worker, clients):
    ada, _ = clients
    lease = CaseLease()
    lease.opened(lease.open(ada, "case-a", fetch), loaded=True)
    notLoaded = lease.open(ada, "case-b", fetch)
    assert lease.opened(notLoaded, loaded=False) == [(ada, "case-b")]
    assert lease.caseId == "case-a"
    assert lease.openNext(ada, [], "case-a", fetch) is None  # the worker offers case-a back; nothing else


def test_submit_names_the_opened_revision_and_a_conflict_says_who_changed_it(worker, clients, tmp_path):
    ada, bea = clients
    label = tmp_path / "label.nii.gz"
    label.write_bytes(gzip.compress(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)).to_bytes()))
    lease = CaseLease()
    lease.opened(lease.open(ada, "case-a", fetch), loaded=True)  # no label yet: opened from none
    # Ada's lease lapses; Bea is handed the case and submits (the worker's state after that).
    worker.leases["case-a"] = "Dr. Bea"
    assert case_lease.CaseLease().submit(bea, "case-a", label)["revision"] == "r0001"
    # Ada's module renews: it warns at once that Submit will be refused, naming Bea.
    assert lease.renew() is None and lease.labelChange == "r0001 by Dr. Bea"
    with pytest.raises(WorkerError) as refused:
        lease.submit(ada, "case-a", label)
    assert refused.value.status == 409 and worker.revisions["case-a"] == ("r0001", "Dr. Bea")  # not overwritten
    message = str(refused.value)
    assert "Dr. Bea" in message and "Dr. Ada" in message and "edits are still in the scene" in message
    assert worker.labelHeaders[-1] == (None, "*", CLIENT_HEADER)
    # Opened again, the case opens on Bea's revision, and Ada's correction of it is accepted.
    reopened = lease.open(ada, "case-a", fetch)
    assert reopened.files["revision"] == "r0001"
    lease.opened(reopened, loaded=True)
    assert lease.labelChange is None
    assert lease.submit(ada, "case-a", label)["revision"] == "r0002"
    assert worker.labelHeaders[-1] == ('"r0001"', None, CLIENT_HEADER)


def test_a_labelled_case_opens_on_its_current_label_not_a_prediction(worker, clients, tmp_path):
    from ASFDALib.case_files import CaseFiles

    logic = CaseFiles(str(tmp_path), lambda: {"labels": {"background": 0, "blob": 1}})
    current = np.zeros((4, 4, 4), np.uint8)
    current[1:3, 1:3, 1:3] = 1
    worker.labels["case-b"], worker.revisions["case-b"] = current, ("r0003", "Dr. Bea")
    ada, _ = clients
    opening = CaseLease().open(ada, "case-b", logic.fetchCase)
    assert opening.revision == "r0003" and opening.files["revision"] == "r0003"
    np.testing.assert_array_equal(np.asarray(nib.load(opening.files["prediction"]).dataobj), current)
    assert ("POST", "/cases/case-b/infer") not in worker.requests  # Bea's label is what Ada corrects


def test_a_worker_older_than_revisions_gets_an_unconditional_submit(worker, clients, tmp_path):
    worker.revisionsSupported = False
    label = tmp_path / "label.nii.gz"
    label.write_bytes(gzip.compress(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)).to_bytes()))
    ada, _ = clients
    lease = CaseLease()
    opening = lease.open(ada, "case-a", fetch)
    assert opening.revision is None  # the lease reply names no revision: nothing to send
    lease.opened(opening, loaded=True)
    assert lease.renew() is None and lease.labelChange is None
    lease.submit(ada, "case-a", label)
    assert worker.labelHeaders[-1] == (None, None, CLIENT_HEADER)
