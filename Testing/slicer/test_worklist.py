"""Worklist and job state, updated from worker-shaped replies (docs/worker-api.md)."""

import pytest
from ASFDALib.worklist import COLUMNS, CaseStatus, JobProgress, JobState, Worklist


def item(rank, case, score, status="unlabeled", version="v1", stale=False, selected=False, dkd=0.5, asd=0.25):
    return {"rank": rank, "case_id": case, "dkd": dkd, "asd": asd, "score": score, "status": status,
            "model_version": version, "scored_at": "2026-11-26T05:00:00Z", "stale": stale,
            "selected": selected}


def reply(items, active="v1", k=2):
    return {"active_model_version": active, "budget_k": k, "strategy": "asfda", "items": items}


@pytest.fixture
def worklist():
    w = Worklist()
    w.updateFromWorklistReply(reply([
        item(1, "c3", 0.9, selected=True),
        item(2, "c1", 0.7, status="final", selected=True),
        item(3, "c2", 0.4, selected=False, dkd=None),
        item(4, "c4", 0.1),
    ]))
    return w


def test_reply_becomes_rows(worklist):
    assert [r.caseId for r in worklist.rows] == ["c3", "c1", "c2", "c4"]
    assert worklist.budgetK == 2 and worklist.strategy == "asfda"
    row = worklist.row("c1")
    assert row.status == CaseStatus.FINAL and row.labeled
    assert row.cells() == ["2", "c1", "0.500", "0.250", "0.700", "final", "", "v1", "", "yes"]
    assert len(row.cells()) == len(COLUMNS)
    assert worklist.selectedCaseIds == ["c3", "c1"]
    assert worklist.labeledCount == 1


def test_next_case_prefers_unlabeled_picks_then_rank(worklist):
    assert worklist.nextCase() == "c3"
    # c1 is a pick but labeled, so after c3 the next is the best unpicked unlabeled case.
    assert worklist.nextCase(afterCaseId="c3") == "c2"
    worklist.markLabeled("c3")
    worklist.markLabeled("c2")
    worklist.markLabeled("c4")
    assert worklist.nextCase() is None


def test_sorting_puts_missing_values_last(worklist):
    assert [r.caseId for r in worklist.sortedRows("score", descending=True)] == ["c3", "c1", "c2", "c4"]
    assert [r.caseId for r in worklist.sortedRows("score")] == ["c4", "c2", "c1", "c3"]
    assert [r.caseId for r in worklist.sortedRows("dkd", descending=True)][-1] == "c2"
    assert [r.caseId for r in worklist.sortedRows("caseId")] == ["c1", "c2", "c3", "c4"]
    assert [r.caseId for r in worklist.sortedRows("status")][0] == "c1"
    with pytest.raises(ValueError):
        worklist.sortedRows("nonsense")


def test_stale_flags_follow_worker_and_activation(worklist):
    worklist.updateFromWorklistReply(reply([
        item(1, "c3", 0.9, version="v1", stale=True), item(2, "c2", 0.5, version="v2")], active="v2"))
    assert [r.stale for r in worklist.rows] == [True, False]
    assert worklist.anyStale
    # Rolling back to v1 makes the v2 scores stale before the next poll confirms it.
    worklist.setActiveModelVersion("v1")
    assert [r.stale for r in worklist.rows] == [False, True]
    assert worklist.row("c2").cells()[COLUMNS.index("Stale")] == "stale"


def test_cases_reply_merges_status_and_keeps_picks(worklist):
    worklist.updateFromCasesReply([
        {"case_id": "c3", "status": "final", "dkd": 0.5, "asd": 0.25, "score": 0.9, "rank": None,
         "model_version": "v1", "scored_at": None, "stale": False},
        {"case_id": "c9", "status": "unlabeled", "dkd": None, "asd": None, "score": None, "rank": None,
         "model_version": None, "scored_at": None, "stale": False},
        {"case_id": "c4", "status": "weird-new-status", "rank": 4, "model_version": "v1"},
    ])
    c3 = worklist.row("c3")
    assert c3.labeled and c3.selected and c3.rank == 1
    assert worklist.row("c9").rank is None and worklist.row("c9").cells()[0] == ""
    assert worklist.row("c4").status == CaseStatus.UNKNOWN
    # Unranked new cases come after every ranked one.
    assert worklist.nextCase(afterCaseId="c2") == "c4"
    assert [r.caseId for r in worklist.sortedRows("rank")][-1] == "c9"


def test_job_progress_from_reply():
    job = {"job_id": "j7", "kind": "adapt", "state": "running",
           "progress": {"phase": "fine-tuning", "step": 30, "total": 120, "metric": 0.8123, "eta_s": 42.7},
           "error": None, "result": None}
    progress = JobProgress.fromReply(job)
    assert progress.percent == 25
    assert progress.describe() == "adapt running: fine-tuning 30/120, metric 0.8123, about 42 s left"
    assert not progress.state.finished
    failed = JobProgress.fromReply({"job_id": "j8", "kind": "rank", "state": "failed", "progress": None,
                                    "error": "CUDA out of memory"})
    assert failed.state == JobState.FAILED and failed.state.finished
    assert failed.describe() == "rank failed: CUDA out of memory"
    done = JobProgress.fromReply({"job_id": "j9", "kind": "rank", "state": "succeeded", "progress": {}})
    assert done.percent == 100


def test_knowledge_source_is_read_when_the_worker_sends_it():
    from ASFDALib.worklist import WorklistRow

    assert WorklistRow.fromReply({"case_id": "a", "knowledge_source": "reference_stats"}).knowledgeSource == (
        "reference_stats"
    )
    assert WorklistRow.fromReply({"case_id": "b"}).knowledgeSource is None  # older workers


def test_lease_columns_and_next_candidates_skip_cases_held_by_others():
    from ASFDALib.worklist import WorklistRow

    assert WorklistRow.fromReply({"case_id": "b"}).cells()[COLUMNS.index("Held by")] == ""  # older workers
    w = Worklist()
    w.updateFromWorklistReply(reply([
        dict(item(1, "c3", 0.9, selected=True), leased_by="Dr. Bea", lease_expires_at="2030-01-01T00:00:00+00:00"),
        item(2, "c1", 0.7, selected=True),
        dict(item(3, "c2", 0.4), leased_by="Dr. Ada"),
        item(4, "c4", 0.1),
    ]))
    row = w.row("c3")
    assert row.cells()[COLUMNS.index("Held by")] == "Dr. Bea" and row.leaseExpiresAt.startswith("2030")
    assert w.candidates(annotator="Dr. Ada") == ["c1", "c2", "c4"]  # Bea's case left out, Ada's own kept
    assert w.candidates(afterCaseId="c1") == ["c3", "c2", "c4"]  # without a name, nothing is left out
    w.markLabeled("c3")
    assert w.row("c3").leasedBy is None  # a submitted label ends the lease


def test_a_finished_adaptation_says_what_the_validation_gate_decided():
    def finished(result):
        return JobProgress.fromReply({"job_id": "a1", "kind": "adapt", "state": "succeeded", "result": result})

    kept = finished({"version": "v0003", "activated": False, "reason": "3-fold held-out Dice 0.61 is below 0.70"})
    text = kept.adaptOutcome()
    assert "v0003 was kept INACTIVE" in text and "0.61 is below 0.70" in text and "press Activate" in text
    advisory = finished({"version": "v0004", "activated": True, "reason": "advisory only: activated"})
    assert advisory.adaptOutcome() == "model v0004 is active (advisory only: activated)"
    assert finished({"version": "v0005"}).adaptOutcome() == "model v0005 is active"
    running = JobProgress.fromReply({"job_id": "a2", "kind": "adapt", "state": "running", "progress": {}})
    assert running.adaptOutcome() == ""


def test_a_ranking_that_labels_overtook_stays_stale_after_an_activation(worklist):
    overtaken = dict(item(1, "c3", 0.9, version="v2", stale=True), stale_reason="labels")
    worklist.updateFromWorklistReply(reply([overtaken, item(2, "c2", 0.5, version="v2")], active="v2"))
    assert [(r.stale, r.staleReason) for r in worklist.rows] == [(True, "labels"), (False, None)]
    worklist.setActiveModelVersion("v2")  # before: re-judged by model version only, the label flag was dropped
    assert worklist.row("c3").stale and worklist.row("c3").staleReason == "labels"
    worklist.setActiveModelVersion("v1")
    assert [(r.stale, r.staleReason) for r in worklist.rows] == [(True, "model"), (True, "model")]
