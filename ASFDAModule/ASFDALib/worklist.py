"""Worklist and job state kept on the Slicer side, updated only from worker replies.

Pure Python so it can be unit-tested without Slicer, and so the GUI can render it at any time
without touching the network.
"""

import enum
from dataclasses import dataclass, field
from typing import Dict, List, Optional


class CaseStatus(str, enum.Enum):
    UNLABELED = "unlabeled"
    FINAL = "final"
    PSEUDO = "pseudo"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value):
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self):
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


# Column order of the worklist table; the .ui and the widget both follow this list.
COLUMNS = ("Rank", "Case", "DKD", "ASD", "Score", "Status", "Held by", "Model", "Stale", "Selected")
SORT_KEYS = ("rank", "caseId", "dkd", "asd", "score", "status", "leasedBy", "modelVersion", "stale", "selected")


def _number(value):
    return None if value is None else float(value)


def _fmt(value):
    return "" if value is None else f"{value:.3f}"


@dataclass
class WorklistRow:
    caseId: str
    rank: Optional[int] = None
    dkd: Optional[float] = None
    asd: Optional[float] = None
    score: Optional[float] = None
    status: CaseStatus = CaseStatus.UNLABELED
    modelVersion: Optional[str] = None
    scoredAt: Optional[str] = None
    stale: bool = False
    staleReason: Optional[str] = None  # "model" or "labels" (labels came in since the ranking); older workers: None
    selected: bool = False
    knowledgeSource: Optional[str] = None  # which DKD reference the worker used; absent on older workers
    leasedBy: Optional[str] = None  # the annotator holding the case; absent on older workers
    leaseExpiresAt: Optional[str] = None
    # A sparse rank's request for this pick: {"axis": 0|1|2 (image IJK axis), "indices": [...]}; else None.
    requestedSlices: Optional[dict] = None
    # Active editing minutes recorded with the current label (ASFDALib/effort.py); None: none recorded.
    effortMinutes: Optional[float] = None

    @classmethod
    def fromReply(cls, item):
        rank = item.get("rank")
        return cls(
            caseId=str(item["case_id"]),
            rank=None if rank is None else int(rank),
            dkd=_number(item.get("dkd")),
            asd=_number(item.get("asd")),
            score=_number(item.get("score")),
            status=CaseStatus.parse(item.get("status", "unlabeled")),
            modelVersion=item.get("model_version"),
            scoredAt=item.get("scored_at"),
            stale=bool(item.get("stale", False)),
            staleReason=item.get("stale_reason") or None,
            selected=bool(item.get("selected", False)),
            knowledgeSource=item.get("knowledge_source") or None,
            leasedBy=item.get("leased_by") or None,
            leaseExpiresAt=item.get("lease_expires_at") or None,
            requestedSlices=item.get("requested_slices") or None,
            effortMinutes=_number(item.get("effort_minutes")),
        )

    @property
    def labeled(self):
        return self.status == CaseStatus.FINAL

    def cells(self):
        """Display strings in ``COLUMNS`` order."""
        return [
            "" if self.rank is None else str(self.rank),
            self.caseId,
            _fmt(self.dkd),
            _fmt(self.asd),
            _fmt(self.score),
            self.status.value if self.effortMinutes is None else f"{self.status.value}, {self.effortMinutes:.1f} min",
            self.leasedBy or "",
            self.modelVersion or "",
            "stale" if self.stale else "",
            "yes" if self.selected else "",
        ]


@dataclass
class Worklist:
    rows: List[WorklistRow] = field(default_factory=list)
    activeModelVersion: Optional[str] = None
    budgetK: Optional[int] = None
    strategy: Optional[str] = None

    def updateFromWorklistReply(self, reply):
        """Replace rows with a ``GET /worklist`` reply (already ordered by rank)."""
        self.activeModelVersion = reply.get("active_model_version")
        self.budgetK = reply.get("budget_k")
        self.strategy = reply.get("strategy")
        self.rows = [WorklistRow.fromReply(item) for item in reply.get("items", [])]
        self._restaleAgainstActive()

    def updateFromCasesReply(self, cases):
        """Merge a ``GET /cases`` reply: statuses and scores change, picks are kept.

        Cases the worklist did not have yet (new volumes in the datastore) are appended unranked.
        """
        byId = self.byCaseId()
        for item in cases:
            fresh = WorklistRow.fromReply(item)
            row = byId.get(fresh.caseId)
            if row is None:
                self.rows.append(fresh)
                continue
            fresh.selected = row.selected
            if fresh.rank is None:
                fresh.rank = row.rank
            self.rows[self.rows.index(row)] = fresh
        self._restaleAgainstActive()

    def setActiveModelVersion(self, version):
        self.activeModelVersion = version
        self._restaleAgainstActive()

    def _restaleAgainstActive(self):
        # The worker sends stale flags, but after an activation (or rollback) we know the answer
        # before the next poll: scores from another version are stale.
        if not self.activeModelVersion:
            return
        # A ranking that labels overtook stays stale whatever the model.
        for row in self.rows:
            if row.modelVersion is not None:
                otherModel = row.modelVersion != self.activeModelVersion
                row.stale = otherModel or row.staleReason == "labels"
                if otherModel:
                    row.staleReason = "model"
                elif row.staleReason == "model":
                    row.staleReason = None

    def markLabeled(self, caseId):
        row = self.row(caseId)
        if row is not None:
            row.status = CaseStatus.FINAL
            row.leasedBy = row.leaseExpiresAt = None  # the worker ends the lease on submission

    def byCaseId(self) -> Dict[str, WorklistRow]:
        return {row.caseId: row for row in self.rows}

    def row(self, caseId):
        return self.byCaseId().get(caseId)

    def sortedRows(self, key="rank", descending=False):
        """Rows sorted by a ``SORT_KEYS`` attribute; missing values always sort last."""
        if key not in SORT_KEYS:
            raise ValueError(f"Unknown sort key {key!r}")

        def value(row):
            v = getattr(row, key)
            return v.value if isinstance(v, enum.Enum) else v

        present = [r for r in self.rows if value(r) is not None]
        missing = [r for r in self.rows if value(r) is None]
        return sorted(present, key=value, reverse=descending) + missing

    @property
    def selectedCaseIds(self):
        return [r.caseId for r in self.sortedRows("rank") if r.selected]

    @property
    def anyStale(self):
        return any(r.stale for r in self.rows)

    @property
    def labeledCount(self):
        return sum(1 for r in self.rows if r.labeled)

    def candidates(self, afterCaseId=None, annotator=None):
        """Cases to annotate next, in order: unlabeled top-k picks, then the rest, by rank.

        ``afterCaseId`` skips the case currently open so "Next" always moves on; with ``annotator``, cases
        the last poll showed held by someone else are left out.
        """
        rows = [
            r
            for r in self.sortedRows("rank")
            if not r.labeled and r.caseId != afterCaseId and (annotator is None or r.leasedBy in (None, annotator))
        ]
        return [r.caseId for r in rows if r.selected] + [r.caseId for r in rows if not r.selected]

    def nextCase(self, afterCaseId=None, annotator=None):
        candidates = self.candidates(afterCaseId, annotator)
        return candidates[0] if candidates else None


@dataclass
class JobProgress:
    """Latest known state of one worker job, as the GUI shows it."""

    jobId: str
    kind: str
    state: JobState
    phase: str = ""
    step: Optional[int] = None
    total: Optional[int] = None
    metric: Optional[float] = None
    etaS: Optional[float] = None
    error: Optional[str] = None
    result: Optional[dict] = None

    @classmethod
    def fromReply(cls, job):
        progress = job.get("progress") or {}
        return cls(
            jobId=str(job["job_id"]),
            kind=str(job.get("kind", "")),
            state=JobState(job.get("state", "queued")),
            phase=progress.get("phase") or "",
            step=progress.get("step"),
            total=progress.get("total"),
            metric=progress.get("metric"),
            etaS=progress.get("eta_s"),
            error=job.get("error"),
            result=job.get("result"),
        )

    @property
    def percent(self):
        if self.state == JobState.SUCCEEDED:
            return 100
        if not self.total or self.step is None:
            return 0
        return max(0, min(100, int(round(100.0 * self.step / self.total))))

    def adaptOutcome(self):
        """What a finished adaptation's validation gate decided, in one line; empty for any other job."""
        if self.kind != "adapt" or self.state != JobState.SUCCEEDED or not self.result:
            return ""
        version = self.result.get("version") or self.result.get("model_version") or "(new)"
        reason = f" ({self.result['reason']})" if self.result.get("reason") else ""
        if self.result.get("not_activated"):  # a rollback while it trained: that choice stands
            return f"model {version} was not activated: {self.result['not_activated']}"
        if self.result.get("activated", True):
            return f"model {version} is active{reason}"
        return (
            f"model {version} was kept INACTIVE, the previous model stays active{reason}; "
            "to use it anyway, choose it under Model versions and press Activate"
        )

    def describe(self):
        text = f"{self.kind} {self.state.value}"
        if self.phase and not self.state.finished:
            text += f": {self.phase}"
        if self.total and not self.state.finished:
            text += f" {self.step or 0}/{self.total}"
        if self.metric is not None:
            text += f", metric {self.metric:.4f}"
        if self.etaS is not None and not self.state.finished:
            text += f", about {int(self.etaS)} s left"
        if self.error:
            text += f": {self.error}"
        return text


def unfinishedJobs(jobs):
    """The queued or running jobs of a ``GET /jobs`` reply, as ``JobProgress``."""
    progress = [JobProgress.fromReply(job) for job in jobs or []]
    return [p for p in progress if not p.state.finished]
