"""Cases with their latest scores, and the ranked worklist, read from the datastore's state database."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from asfda.data.datastore import Datastore
from asfda.data.effort import effort_minutes
from asfda.data.label_revisions import LabelRevisions
from asfda.data.leases import lease_fields
from asfda.data.state import ScoreRecord


def labelled_since(records: List[ScoreRecord], final_ids: Set[str]) -> bool:
    """Whether a case of this ranking got a clinician label after it: a ranking scores only unlabelled
    cases, so a ranked case now labelled is a label the ranking (and its diversity pick) did not know."""
    return any(r.case_id in final_ids for r in records)


def stale_reason(record: ScoreRecord, active: Optional[str], labels_changed: bool) -> Optional[str]:
    """Why a ranking no longer describes the loop: another model scored it, or labels came in after it;
    None while it is current."""
    if record.model_version != active:
        return "model"
    return "labels" if labels_changed else None


def _score_fields(record: Optional[ScoreRecord], active: Optional[str], labels_changed: bool = False) -> Dict[str, Any]:
    if record is None:
        return {}
    reason = stale_reason(record, active, labels_changed)
    return {
        "dkd": record.dkd,
        "asd": record.asd,
        "score": record.score,
        "rank": record.rank,
        "model_version": record.model_version,
        "scored_at": record.scored_at,
        "knowledge_source": record.knowledge_source,
        "requested_slices": record.requested_slices,
        "stale": reason is not None,
        "stale_reason": reason,
    }


def _all_scores(store: Datastore) -> List[ScoreRecord]:
    with store.state.connect() as db:
        rows = db.execute("SELECT case_id, strategy FROM scores ORDER BY scored_at, rowid").fetchall()
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))  # oldest ranking first
    return [record for strategy in strategies for record in store.state.scores(strategy)]


def _statuses(store: Datastore, case_ids: List[str]) -> Dict[str, str]:
    """Each case's status, read once per reply (one file check per label tag and case)."""
    return {c: store.case_status(c) for c in case_ids}


def _final_ids(statuses: Dict[str, str]) -> Set[str]:
    return {c for c, status in statuses.items() if status == "final"}


def _revision(case_id: str, status: str, revisions: Dict[str, str], minutes: Dict[str, float]) -> Dict[str, Any]:
    if status != "final":
        return {}
    return {"revision": revisions.get(case_id), "effort_minutes": minutes.get(case_id)}


def _effort_minutes(store: Datastore) -> Dict[str, float]:
    """case id -> active minutes recorded with its current final label (cases without a record left out)."""
    found = {r.case_id: effort_minutes(r.extra) for r in store.state.labels("final")}
    return {c: m for c, m in found.items() if m is not None}


def cases(store: Datastore, active: Optional[str], leases: Optional[Dict] = None) -> List[Dict[str, Any]]:
    leases = leases or {}
    every = _all_scores(store)
    statuses = _statuses(store, store.case_ids())
    final_ids = _final_ids(statuses)
    changed = {
        strategy: labelled_since([r for r in every if r.strategy == strategy], final_ids)
        for strategy in {r.strategy for r in every}
    }
    revisions = LabelRevisions(store.root, store.state.path).current_ids()
    minutes = _effort_minutes(store)
    latest: Dict[str, ScoreRecord] = {}
    for record in sorted(every, key=lambda r: r.scored_at):
        latest[record.case_id] = record  # the most recent ranking that scored the case wins
    return [
        {
            "case_id": c,
            "status": status,
            **_score_fields(latest.get(c), active, c in latest and changed[latest[c].strategy]),
            **_revision(c, status, revisions, minutes),
            **lease_fields(leases.get(c)),
        }
        for c, status in statuses.items()
    ]


def latest_strategy(store: Datastore) -> Optional[str]:
    with store.state.connect() as db:
        row = db.execute("SELECT strategy FROM scores ORDER BY scored_at DESC, rowid DESC LIMIT 1").fetchone()
    return row["strategy"] if row else None


def worklist(
    store: Datastore, active: Optional[str], k: Optional[int], leases: Optional[Dict] = None
) -> Dict[str, Any]:
    leases = leases or {}
    revisions = LabelRevisions(store.root, store.state.path).current_ids()
    minutes = _effort_minutes(store)
    strategy = latest_strategy(store)
    records = store.state.scores(strategy) if strategy else []
    statuses = _statuses(store, store.case_ids())
    labels_changed = labelled_since(records, _final_ids(statuses))
    records = [r for r in records if r.case_id in statuses]  # a volume removed from images/ leaves the list
    budget = k if k is not None else (sum(r.selected for r in records) if records else None)
    items = [
        {
            "case_id": r.case_id,
            "status": statuses[r.case_id],
            **_score_fields(r, active, labels_changed),
            # The engine orders the k picks first, so a different budget k takes the first k ranks.
            "selected": r.rank <= k if k is not None else r.selected,
            **_revision(r.case_id, statuses[r.case_id], revisions, minutes),
            **lease_fields(leases.get(r.case_id)),
        }
        for r in records
    ]
    return {"active_model_version": active, "budget_k": budget, "strategy": strategy, "items": items}


def next_candidates(store: Datastore) -> List[str]:
    """Cases still to label, in the order "next case for me" hands them out: the latest ranking's order,
    then cases the ranking has not seen yet (added after it), by id."""
    strategy = latest_strategy(store)
    known = store.case_ids()
    ranked = [r.case_id for r in store.state.scores(strategy)] if strategy else []
    order = [c for c in ranked if c in set(known)] + sorted(set(known) - set(ranked))
    return [c for c in order if store.case_status(c) != "final"]
