"""The clinician's loop on one datastore: rank, infer, adapt, evaluate, write back.

Every face (worker jobs, the CLI, the demo, the benchmark) runs the loop through a `LoopSession`, so the
device is resolved once, one precision rule serves inference, scoring and the validation gate (and is
recorded with each result), a Ray scorer is built in one way, and the pre-flight checks (clinician labels
put into labels/final/ by hand) run before every rank and adapt, whichever face asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from asfda.data.datastore import Datastore
from asfda.data.hand_placed import check_final_labels
from asfda.data.sparse_labels import check_final_masks
from asfda.loop.adapt import AdaptResult, adapt_datastore, advisory_verdict
from asfda.loop.device import AUTO, resolve_device
from asfda.loop.evaluate import Evaluation, evaluate
from asfda.loop.infer import predict_case
from asfda.loop.rank import RankOutcome, rank_pool
from asfda.loop.requests import AdaptRequest, RankRequest
from asfda.models.config import ModelConfig
from asfda.models.inference import Precision, Predictor, resolve_precision
from asfda.scoring.options import ScoringOptions
from asfda.scoring.ray_options import ADDRESS_ENV, RayOptions

__all__ = ["LoopSession", "SessionSettings"]

ProgressFn = Callable[..., None]


@dataclass
class SessionSettings:
    """How a session runs: device (auto: CUDA when torch sees one), precision rule, optional Ray address."""

    device: str = AUTO
    precision: str = Precision.AUTO.value
    ray_address: Optional[str] = None  # auto, local or ray://HOST:PORT; None: score in this process

    @classmethod
    def from_args(cls, args) -> SessionSettings:
        """From a CLI command's --device (and --ray where it has one)."""
        return cls(device=getattr(args, "device", AUTO) or AUTO, ray_address=getattr(args, "ray", None))

    @classmethod
    def from_params(cls, params: Dict, device: str, env: Optional[Dict[str, str]] = None) -> SessionSettings:
        """For a worker job: the worker's device, the job's precision, `asfda serve --ray` via the environment."""
        env = os.environ if env is None else env
        return cls(
            device=device,
            precision=params.get("precision") or Precision.AUTO.value,
            ray_address=env.get(ADDRESS_ENV) or None,
        )


@dataclass
class LoopSession:
    """One datastore, one device, one precision. Build with `LoopSession.open(path, settings)`."""

    store: Datastore
    settings: SessionSettings = field(default_factory=SessionSettings)
    progress: Optional[ProgressFn] = None
    device: str = field(init=False)
    precision: Precision = field(init=False)
    # Cases the last pre-flight check took in from labels/final/ (shown by the CLI).
    taken_in: List[str] = field(default_factory=list, init=False)
    duplicates: Dict[str, str] = field(default_factory=dict, init=False)  # case id -> why it is left out

    def __post_init__(self) -> None:
        self.device = resolve_device(self.settings.device)
        self.precision = resolve_precision(Precision(self.settings.precision), self.device)
        self._ray = None

    @classmethod
    def open(cls, root: Path, settings: Optional[SessionSettings] = None, progress=None, create=False) -> LoopSession:
        """Open an existing datastore folder (`create=True` makes a new one)."""
        return cls(Datastore(root, create=create), settings or SessionSettings(), progress)

    # -- shared pieces -------------------------------------------------------------------------------------------

    def scoring_options(self, chunk_size: Optional[int] = None) -> ScoringOptions:
        options = ScoringOptions(precision=self.precision)
        if chunk_size:
            options.chunk_size = int(chunk_size)
        return options

    def pool_scorer(self):
        """The Ray pool scorer when the settings name a cluster (built once per session), else None."""
        if self.settings.ray_address and self._ray is None:
            from asfda.scoring.ray_pool import RayPoolScorer  # ray is an optional extra

            self._ray = RayPoolScorer(RayOptions.from_env(self.settings.ray_address).check_installed())
        return self._ray

    def preflight(self) -> List[str]:
        """Validate and record clinician labels put into labels/final/ by hand (a bad one stops with one line),
        and note case ids that two images name (left out of the step, reported in `duplicates`).

        Returns:
            the case ids taken in by this check.
        """
        self.duplicates = self.store.duplicate_cases()
        config = self.active_config()
        active = self.store.models.active_version()
        self.taken_in = [] if config is None else check_final_labels(self.store, config, active)
        if config is not None:
            check_final_masks(self.store, config)  # sparse labels' masks placed by hand
        return self.taken_in  # without a model the step itself reports what is missing

    def active_config(self) -> Optional[ModelConfig]:
        """The active version's config (read without loading weights), or None before any model is imported."""
        version = self.store.models.active_version()
        return None if version is None else ModelConfig.load(self.store.models.root / version / "config.json")

    # -- the loop's steps ---------------------------------------------------------------------------------------

    def rank(self, request: RankRequest, should_yield: Optional[Callable[[], bool]] = None) -> RankOutcome:
        """Score the unlabelled pool and store the worklist.

        Args:
            request: strategy, budget and selection settings; should_yield: asked between chunks (the worker
                lets an interactive Infer go first).
        Returns:
            the ranked cases, the model version, per-case errors, scored/cached counts and the precision used.
        """
        slices = request.slice_options()  # a bad sparse request stops before any pass
        self.preflight()
        outcome = rank_pool(
            self.store,
            request.ranking_options(),
            self.device,
            progress=self.progress,
            scoring=self.scoring_options(request.chunk_size),
            should_yield=should_yield,
            pool_scorer=self.pool_scorer(),
            slices=slices,
        )
        outcome.precision = self.precision.value
        return outcome

    def infer(self, case_ids: Optional[List[str]] = None, version: Optional[str] = None) -> List[Path]:
        """Predict cases (default: all) and write labels/prediction/CASE.nii.gz for each.

        Returns:
            the written paths, in the order of `case_ids`.
        """
        cases = list(case_ids) if case_ids else self.store.case_ids()
        for case_id in cases:  # refuse bad ids before spending time on the model
            self.store.image_path(case_id)
        model = self.store.models.load(version, device=self.device)
        predictor = Predictor(model.network, model.config, self.device, self.precision)
        paths = []
        for index, case_id in enumerate(cases):
            paths.append(predict_case(self.store, case_id, model, predictor))
            if self.progress:
                self.progress("infer", index + 1, len(cases))
        return paths

    def adapt(
        self, request: AdaptRequest, activate: bool = True, should_stop: Optional[Callable[[], bool]] = None
    ) -> AdaptResult:
        """Fine-tune on the clinician labels (+ reliable pseudo-labels) and publish a new version.

        Args:
            request: steps, seed, pseudo-labels, gate; activate: False lets a supervisor (the worker) flip ACTIVE.
        Returns:
            the new version, its parent, metrics (with the precision used), pseudo-labelled cases, gate decision.
        """
        self.preflight()
        result = adapt_datastore(
            self.store,
            request.adapt_options(self.scoring_options(request.chunk_size)),
            self.device,
            progress=self.progress,
            should_stop=should_stop,
            activate=activate,
        )
        result.metrics["precision"] = self.precision.value
        return result

    def verdict(self, version: str, request: AdaptRequest, should_stop: Optional[Callable[[], bool]] = None) -> Dict:
        """The advisory gate verdict `adapt` left pending for `version`, computed with the round's recipe and
        attached to the version's metadata.

        Args:
            version: a version whose gate decision is pending; request: the adapt request it was trained with.
        Returns:
            the recorded gate decision (GateDecision.to_dict()); a version not pending returns its decision as is.
        """
        return advisory_verdict(
            self.store,
            version,
            request.adapt_options(self.scoring_options(request.chunk_size)),
            self.device,
            progress=self.progress,
            should_stop=should_stop,
        )

    def evaluate(self, references: Dict[str, Path], version: Optional[str] = None) -> Evaluation:
        """Dice and HD95 of `version` (default: active) on reference labels, scoring what `infer` would write."""
        return evaluate(self.store, references, version, self.device, self.progress, self.precision)

    def write_back(self, leases=None) -> List[Dict]:
        """Send queued clinician labels to the PACS as DICOM SEG (only for a datastore with a DICOMweb source)."""
        from asfda.data.dicomweb.writeback import flush  # highdicom: only PACS datastores need it

        source = self.store.image_source
        if source is None or not hasattr(source, "client"):
            return []
        return flush(self.store, source, leases)
