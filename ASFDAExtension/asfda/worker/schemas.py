"""Request and reply bodies of the worker API (docs/worker-api.md), as pydantic models for validation and OpenAPI."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from asfda.core.names import slice_rule_names, strategy_names

# Read from the one list of strategies (asfda.core.names), so a new strategy needs no edit here.
StrategyName = Literal[tuple(strategy_names())]  # type: ignore[valid-type]
SliceRuleName = Literal[tuple(slice_rule_names())]  # type: ignore[valid-type]
JobKind = Literal["rank", "adapt", "infer", "verdict"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
CaseStatus = Literal["unlabeled", "final", "pseudo"]


class Strict(BaseModel):
    # Unknown keys are errors: a misspelt option must not silently fall back to its default.
    model_config = ConfigDict(extra="forbid")


class RankRequest(Strict):
    strategy: StrategyName = "asfda"
    budget_k: int = Field(4, ge=1, le=10000)
    seed: int = 0
    # Newly scored cases between two looks at the queue: an Infer request waits for at most one chunk.
    chunk_size: int = Field(8, ge=1, le=10000)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Sparse annotation: ask for this many slices of each pick (0: whole volumes), along `slice_axis`.
    slices_per_volume: int = Field(0, ge=0, le=4096)
    slice_axis: Union[Literal["auto"], Literal[0, 1, 2]] = "auto"
    slice_rule: SliceRuleName = "even"


class AdaptRequest(Strict):
    steps: Optional[int] = Field(None, ge=1, le=1_000_000)
    use_pseudo_labels: bool = True
    # Sparse labels: the teacher's confident voxels fill their unannotated part (as pseudo-labels).
    fill_unannotated_with_pseudo_labels: bool = False
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Below this many clinician labels the validation gate's k-fold verdict is advisory (0: always enforced).
    gate_decide_from_labels: Optional[int] = Field(None, ge=0, le=100_000)


class Health(BaseModel):
    status: str = "ok"


class Info(BaseModel):
    version: str
    device: str
    gpu_memory_free_mb: Optional[float]
    active_model_version: Optional[str]
    datastore: str
    labels: Dict[str, int]
    label_colors: Dict[str, List[float]]
    max_upload_bytes: int


class Progress(BaseModel):
    phase: Optional[str] = None
    step: Optional[int] = None
    total: Optional[int] = None
    metric: Optional[float] = None
    eta_s: Optional[float] = None


class Job(BaseModel):
    job_id: str
    kind: JobKind
    state: JobState
    params: Dict[str, Any]
    progress: Progress
    error: Optional[str]
    result: Optional[Dict[str, Any]]
    created: str
    started: Optional[str]
    finished: Optional[str]


class RequestedSlices(BaseModel):
    axis: int = Field(description="voxel axis of the image the slices cut (0, 1 or 2)")
    indices: List[int] = Field(description="slice indices along that axis, ascending")
    rule: str = Field(description="how they were chosen: even, uncertainty")


class ScoreFields(BaseModel):
    case_id: str
    status: CaseStatus
    dkd: Optional[float] = None
    asd: Optional[float] = None
    score: Optional[float] = None
    rank: Optional[int] = None
    model_version: Optional[str] = None
    scored_at: Optional[str] = None
    knowledge_source: Optional[str] = None  # DKD's reference: norm_stats, reference_stats, feature_prior, pool_mean
    stale: bool = False
    stale_reason: Optional[str] = Field(
        None, description="why stale: 'model' (another version scored them) or 'labels' (labels came in since)"
    )
    revision: Optional[str] = Field(None, description="the current final label's revision (send it in If-Match)")
    requested_slices: Optional[RequestedSlices] = Field(None, description="a sparse rank's slices to annotate")
    effort_minutes: Optional[float] = Field(None, description="active editing minutes of the current label")
    leased_by: Optional[str] = Field(None, description="annotator holding the case now, if any")
    lease_expires_at: Optional[str] = None


class Case(ScoreFields):
    pass


class WorklistItem(ScoreFields):
    selected: bool


class Worklist(BaseModel):
    active_model_version: Optional[str]
    budget_k: Optional[int]
    strategy: Optional[str]
    items: List[WorklistItem]


class LabelReply(BaseModel):
    case_id: str
    tag: str
    author: Optional[str]
    created: str
    model_version: Optional[str]
    label_values: List[int] = Field(description="non-background label values present in the stored label")
    prediction: Optional[Dict[str, Any]] = Field(
        None, description="the stored prediction the label was corrected from: model_version, created, sha256"
    )
    revision: str = Field(description="the revision this submit created (also the reply's ETag)")
    replaced_revision: Optional[str] = Field(None, description="the revision that was current before")
    source: str = Field(description="upload, cli or slicer")
    seg_queued: bool = Field(False, description="a DICOM SEG of the label is queued for the PACS")
    annotated_mask: Optional[Dict[str, Any]] = Field(
        None, description="a sparse label's mask: file, annotated_voxels, annotated_fraction (None: fully annotated)"
    )
    requested_slices: Optional[Dict[str, Any]] = Field(
        None, description="of the slices the latest rank requested: axis, requested, done, coverage (0..1)"
    )
    effort: Optional[Dict[str, Any]] = Field(None, description="the effort record sent with the label, if any")


class LeaseReply(BaseModel):
    case_id: str
    annotator: str
    leased_at: str
    expires_at: str
    rank: Optional[int] = None
    status: Optional[CaseStatus] = None
    revision: Optional[str] = Field(None, description="the case's final label revision when leased (null: none)")
    revision_author: Optional[str] = None
    label_changed: bool = Field(False, description="a renewal found another revision than the lease's own")


class LabelRevision(BaseModel):
    case_id: str
    revision: str
    author: Optional[str]
    created: str
    model_version: Optional[str]
    source: Literal["upload", "cli", "slicer", "simulated", "adopted", "hand-placed"]
    sha256: str
    current: bool
    effort: Optional[Dict[str, Any]] = Field(None, description="the effort record sent with this revision, if any")


class AuditEvent(BaseModel):
    at: str
    annotator: Optional[str]
    action: str
    model_version: Optional[str]
    detail: Dict[str, Any]


class GateVerdict(BaseModel):
    """The validation gate's verdict on a version, as recorded in its metadata (at publish, or when an advisory
    verdict computed after the version became active arrives)."""

    verdict: str = Field(description='"not worse", "worse", "unknown", "not gated" or "pending" (still computing)')
    binding: bool = Field(description="whether the verdict decided activation (False: advisory, reported only)")
    advisory: bool = Field(description="judged worse, but too few labels to keep it inactive")
    activate: bool
    method: str
    candidate_dice: Optional[float] = None
    parent_dice: Optional[float] = None
    reason: str = ""
    pending: bool = Field(False, description="an advisory verdict still to be computed (a verdict job is queued)")
    folds: int = 0
    held_out: List[str] = Field(default_factory=list, description="the labels held out (new to the parent)")


class ModelInfo(BaseModel):
    version: str
    parent: Optional[str]
    created: str
    metrics: Dict[str, Any]
    note: str
    active: bool
    gate: Optional[GateVerdict] = Field(None, description="null for versions no gate judged (imports, older ones)")
    gate_summary: str = Field("", description='the verdict in a few words, e.g. "worse, advisory"')
    not_activated: str = Field("", description="why a version the gate passed is inactive (a rollback meanwhile)")
    bundle_code_trusted: bool = Field(
        False, description="imported with --trust-bundle-code: MONAI's parser builds it, evaluating its expressions"
    )


class ActiveModel(BaseModel):
    active_model_version: str


class RoundLabel(BaseModel):
    case_id: str
    revision: Optional[str] = Field(description="the label revision trained on (null: none has its content any more)")
    slices: int = Field(description="annotated slices of this label")
    slices_from: Literal["effort", "sparse", "volume"] = Field(
        description="where the count came from: the effort record, a sparse label's slices, or the whole volume"
    )
    minutes: Optional[float] = Field(description="active editing minutes (null: sent without an effort record)")


class EffortRound(BaseModel):
    version: str = Field(description="the model version this round trained")
    parent: Optional[str]
    created: str
    cases: int = Field(description="labels new to this version: not in its parent's training set, or corrected")
    annotated_slices: int
    minutes: Optional[float] = Field(description="sum of the labels' minutes; null unless every label has a record")
    minutes_known: int = Field(description="labels of the round that have an effort record")
    cumulative_minutes: Optional[float] = Field(description="along the version's ancestry, this round included")
    labels: List[RoundLabel]


class EffortReport(BaseModel):
    baseline: Optional[str] = Field(description="the version the first round started from")
    rounds: List[EffortRound] = Field(description="oldest first; empty before the first adaptation")
