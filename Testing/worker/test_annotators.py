"""Several annotators on one worker: leases, "next case for me", per-annotator tokens, audit (real HTTP)."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from asfda.core.errors import ConfigError
from asfda.data.leases import LeaseBook, LeaseConflict
from asfda.worker.annotators import load_annotator_tokens
from asfda.worker.settings import WorkerSettings
from worker_helpers import WorkerProcess, upload, wait_job

ALICE_TOKEN, BOB_TOKEN, ADMIN_TOKEN = "alice-token-0123456789", "bob-token-0123456789ab", "admin-token-0123456789"


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_lease_book_expiry_release_conflict(tmp_path):
    clock = FakeClock()
    book = LeaseBook(tmp_path / "state.db", clock=clock)
    first = book.take_next("alice", ["c1", "c2", "c3"], lease_s=60)
    assert first.case_id == "c1" and first.annotator == "alice"
    assert book.take_next("alice", ["c1", "c2", "c3"], lease_s=60).case_id == "c1"  # asking again renews
    assert book.take_next("bob", ["c1", "c2", "c3"], lease_s=60).case_id == "c2"
    with pytest.raises(LeaseConflict, match="leased to alice"):
        book.take("c1", "bob")
    with pytest.raises(LeaseConflict, match="leased to alice"):
        book.check_may_submit("c1", "bob")
    with pytest.raises(LeaseConflict):
        book.release("c1", "bob")
    assert book.release("c2", "bob") is True and book.release("c2", "bob") is False
    clock.now += 61  # alice's lease runs out: carol may take c1, and the audit says it expired
    assert book.holder("c1") is None
    assert book.take_next("carol", ["c1", "c2", "c3"], lease_s=60).case_id == "c1"
    book.submitted("c1", "carol", "v0001", label_values=[1])
    assert book.leases() == {}
    actions = [(e["annotator"], e["action"]) for e in book.audit("c1")]
    assert actions == [
        ("alice", "leased"),
        ("alice", "lease renewed"),
        ("alice", "lease expired"),
        ("carol", "leased"),
        ("carol", "label submitted"),
    ]
    assert book.audit("c1")[-1]["model_version"] == "v0001"


def test_annotator_tokens_file_and_settings(tmp_path):
    good = tmp_path / "annotators.json"
    good.write_text(json.dumps({"Dr. Alice": ALICE_TOKEN, "bob": BOB_TOKEN}))
    assert load_annotator_tokens(good) == {ALICE_TOKEN: "Dr. Alice", BOB_TOKEN: "bob"}
    for bad, message in [
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"a": "short"}), "at least 16"),
        (json.dumps({"a": ALICE_TOKEN, "b": ALICE_TOKEN}), "share a token"),
        ("{", "cannot read JSON"),
    ]:
        good.with_name("bad.json").write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_annotator_tokens(good.with_name("bad.json"))
    # Beyond loopback, per-annotator tokens alone are enough to start; nothing at all is refused.
    WorkerSettings.build(tmp_path, "0.0.0.0", 1, "cpu", None, 1, good).check()
    with pytest.raises(Exception, match="without a token"):
        WorkerSettings.build(tmp_path, "0.0.0.0", 1, "cpu", None, 1, None).check()


@pytest.fixture(scope="module")
def worker(sample, tmp_path_factory):
    annotators = tmp_path_factory.mktemp("annotators") / "annotators.json"
    annotators.write_text(json.dumps({"alice": ALICE_TOKEN, "bob": BOB_TOKEN}))
    process = WorkerProcess(sample.datastore, ["--annotators", str(annotators)], token=ADMIN_TOKEN).wait_healthy()
    yield process
    process.stop()


def client_for(worker, token=None, annotator=None) -> httpx.Client:
    headers = WorkerProcess.auth(token)
    if annotator:
        headers["X-Annotator"] = annotator
    return httpx.Client(base_url=worker.url, timeout=60, headers=headers)


def test_concurrent_annotators_never_share_a_case(worker, sample):
    admin = worker.client
    job = admin.post("/rank", json={"strategy": "asfda", "budget_k": 2}).json()
    assert wait_job(admin, job["job_id"])["state"] == "succeeded"
    order = [i["case_id"] for i in admin.get("/worklist").json()["items"]]

    # Six annotators ask at the same instant, over real HTTP, each on its own connection.
    names = [f"annotator-{i}" for i in range(6)]
    barrier, replies = threading.Barrier(len(names)), {}

    def ask(name):
        with client_for(worker, ADMIN_TOKEN, name) as client:
            barrier.wait()
            replies[name] = client.post("/next", params={"lease_s": 600})

    threads = [threading.Thread(target=ask, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code == 200 for r in replies.values()), [r.text for r in replies.values()]
    leased = {name: r.json()["case_id"] for name, r in replies.items()}
    assert sorted(leased.values()) == sorted(order), leased  # six cases, six annotators, no case twice
    assert {r.json()["annotator"] for r in replies.values()} == set(names)
    # The worklist shows who holds each case; a seventh annotator finds nothing free.
    holders = {i["case_id"]: i["leased_by"] for i in admin.get("/worklist").json()["items"]}
    assert holders == {case: name for name, case in leased.items()}
    with client_for(worker, ADMIN_TOKEN, "annotator-late") as late:
        assert late.post("/next").json() is None
    for name, case_id in leased.items():
        with client_for(worker, ADMIN_TOKEN, name) as client:
            assert client.delete(f"/cases/{case_id}/lease").json()["released"] is True
    assert admin.get("/leases").json() == []


def test_next_follows_ranking_and_submit_ends_lease(worker, sample):
    order = [i["case_id"] for i in worker.client.get("/worklist").json()["items"]]
    alice, bob = client_for(worker, ALICE_TOKEN), client_for(worker, BOB_TOKEN)
    try:
        first = alice.post("/next").json()
        assert first["case_id"] == order[0] and first["annotator"] == "alice" and first["rank"] == 1
        assert bob.post("/next").json()["case_id"] == order[1]
        # Bob cannot label or take Alice's case; the error names the holder.
        refused = upload(bob, order[0], sample.labels[order[0]])
        assert refused.status_code == 409 and "leased to alice" in refused.json()["detail"]
        assert bob.post(f"/cases/{order[0]}/lease").status_code == 409
        # A token fixes the name: Alice's token cannot speak for Bob.
        assert alice.post("/next", headers={"X-Annotator": "bob"}).status_code == 403
        worker.client.post(f"/cases/{order[0]}/infer")  # a prediction to correct, so its provenance is recorded
        stored = upload(alice, order[0], sample.labels[order[0]], author="someone-else")
        assert stored.status_code == 200, stored.text
        assert stored.json()["author"] == "alice" and stored.json()["prediction"]["model_version"] == "v0001"
        assert len(stored.json()["prediction"]["sha256"]) == 16
        # The lease ended with the submission; Alice's next case skips the labelled and the leased one.
        assert order[0] not in {lease["case_id"] for lease in worker.client.get("/leases").json()}
        assert alice.post("/next").json()["case_id"] == order[2]
        audit = worker.client.get(f"/cases/{order[0]}/audit").json()
        assert [(e["annotator"], e["action"]) for e in audit][-2:] == [
            ("alice", "leased"),
            ("alice", "label submitted"),
        ]
        assert audit[-1]["model_version"] == "v0001" and audit[-1]["detail"]["label_values"] == [1]
        assert audit[-1]["detail"]["prediction"]["model_version"] == "v0001"
        # An annotator-less admin request that needs a name says how to give one.
        missing = worker.client.post("/next")
        assert missing.status_code == 400 and "X-Annotator" in missing.json()["detail"]
        # Only the administrator token force-releases someone else's lease.
        assert bob.delete(f"/cases/{order[2]}/lease", params={"force": True}).status_code == 403
        assert worker.client.delete(f"/cases/{order[2]}/lease", params={"force": True}).json()["released"] is True
        assert worker.client.get("/cases/nope/audit").status_code == 404
    finally:
        alice.close()
        bob.close()


def test_expired_lease_is_offered_again(worker):
    with client_for(worker, ALICE_TOKEN) as alice, client_for(worker, BOB_TOKEN) as bob:
        for lease in worker.client.get("/leases").json():
            worker.client.delete(f"/cases/{lease['case_id']}/lease", params={"force": True})
        held = alice.post("/next", params={"lease_s": 1}).json()["case_id"]
        assert bob.post("/next").json()["case_id"] != held
        time.sleep(1.3)
        bob.delete(f"/cases/{bob.post('/next').json()['case_id']}/lease")
        assert bob.post("/next").json()["case_id"] == held
        actions = [e["action"] for e in worker.client.get(f"/cases/{held}/audit").json()]
        assert "lease expired" in actions


def test_slicer_client_names_its_annotator(worker):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ASFDAModule"))
    from ASFDALib.client import WorkerClient, WorkerError

    for lease in worker.client.get("/leases").json():
        worker.client.delete(f"/cases/{lease['case_id']}/lease", params={"force": True})
    mueller = WorkerClient(worker.url, token=ADMIN_TOKEN, annotator="  Dr.  Müller ")
    other = WorkerClient(worker.url, token=ADMIN_TOKEN, annotator="Dr. Okafor")
    lease = mueller.nextCase(leaseSeconds=120)
    assert lease["annotator"] == "Dr. Müller" and lease["rank"] is not None
    with pytest.raises(WorkerError, match="leased to Dr. Müller") as refused:
        other.leaseCase(lease["case_id"])
    assert refused.value.status == 409
    assert [x["annotator"] for x in other.leases()] == ["Dr. Müller"]
    assert mueller.releaseCase(lease["case_id"])["released"] is True
    assert other.leaseCase(lease["case_id"])["annotator"] == "Dr. Okafor"
    assert [e["action"] for e in other.audit(lease["case_id"])][-3:] == ["leased", "released", "leased"]


def put_label(client: httpx.Client, case_id: str, path: Path, headers=None, params=None):
    with open(path, "rb") as handle:
        files = {"file": (path.name, handle, "application/octet-stream")}
        return client.put(f"/cases/{case_id}/label", files=files, headers=headers or {}, params=params)


def test_lost_update_over_http_is_refused_with_409_naming_both(worker, sample):
    """Issue 18's scenario: A's lease lapses, B is handed the case and submits, A's module renews and submits."""
    for lease in worker.client.get("/leases").json():
        worker.client.delete(f"/cases/{lease['case_id']}/lease", params={"force": True})
    case_id = next(c["case_id"] for c in worker.client.get("/cases").json() if c["status"] == "unlabeled")
    label = sample.labels[case_id]
    with client_for(worker, ALICE_TOKEN) as alice, client_for(worker, BOB_TOKEN) as bob:
        opened = alice.post(f"/cases/{case_id}/lease", params={"lease_s": 1}).json()
        assert opened["revision"] is None  # she opens a case without a label
        time.sleep(1.3)
        assert bob.post(f"/cases/{case_id}/lease").json()["revision"] is None
        by_bob = put_label(bob, case_id, label, {"If-None-Match": "*", "X-ASFDA-Client": "slicer/test"})
        assert by_bob.status_code == 200, by_bob.text
        assert (by_bob.json()["revision"], by_bob.json()["source"]) == ("r0001", "slicer")
        assert by_bob.headers["ETag"] == '"r0001"'
        # Her module renews: the lease says the case now holds bob's label.
        renewed = alice.post(f"/cases/{case_id}/lease").json()
        assert (renewed["revision"], renewed["revision_author"]) == ("r0001", "bob")
        refused = put_label(alice, case_id, label, {"If-None-Match": "*"})
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "bob" in detail and "alice" in detail and "r0001" in detail
        assert put_label(alice, case_id, label).status_code == 409  # naming nothing is no way round it
        assert put_label(alice, case_id, label, {"If-Match": "*"}).status_code == 400
        # Seen and corrected: If-Match with the revision she now opened; /cases shows the new revision.
        stored = put_label(alice, case_id, label, {"If-Match": '"r0001"'})
        assert stored.status_code == 200 and stored.json()["replaced_revision"] == "r0001", stored.text
        assert {c["case_id"]: c.get("revision") for c in alice.get("/cases").json()}[case_id] == "r0002"
        forced = put_label(bob, case_id, label, {"If-Match": '"r0001"'}, params={"overwrite": "true"})
        assert forced.status_code == 200 and forced.json()["revision"] == "r0003", forced.text
        # Every revision is listed with its author and source, and each file can be fetched again.
        listed = alice.get(f"/cases/{case_id}/revisions").json()
        assert [(r["revision"], r["author"], r["source"], r["current"]) for r in listed] == [
            ("r0001", "bob", "slicer", False),
            ("r0002", "alice", "upload", False),
            ("r0003", "bob", "upload", True),
        ]
        first = alice.get(f"/cases/{case_id}/revisions/r0001")
        assert first.status_code == 200 and first.headers["ETag"] == '"r0001"'
        assert hashlib.sha256(first.content).hexdigest() == listed[0]["sha256"]
        assert alice.get(f"/cases/{case_id}/revisions/r0009").status_code == 404
        actions = [(e["annotator"], e["action"]) for e in worker.client.get(f"/cases/{case_id}/audit").json()]
        assert actions.count(("bob", "label submitted")) == 2 and actions.count(("alice", "label submitted")) == 1
