"""Score a pool of datastore cases with one model: cached signals first, the rest streamed and scored.

This is the per-case scorer that a rank, an adaptation and a cluster worker share: whatever computes a
case's signals goes through `CaseScorer.score`, and whatever stores them goes through the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from asfda.core.errors import AsfdaError
from asfda.data.datastore import Datastore
from asfda.models.inference import Predictor
from asfda.models.store import LoadedModel
from asfda.query.dkd import KnowledgeReference, knowledge_reference
from asfda.query.signals import CaseSignals, fill_pool_mean_gaps, score_volume
from asfda.scoring.cache import SignalCache, SignalKey
from asfda.scoring.options import ScoringOptions
from asfda.scoring.stream import stream_cases

ProgressFn = Callable[[str, int, int], None]


class Yielded(AsfdaError):
    """A rank stepped aside between chunks for interactive work; the next run resumes from the cache."""


@dataclass
class PoolSignals:
    signals: Dict[str, CaseSignals]  # every case that could be scored, in the order asked
    errors: Dict[str, str] = field(default_factory=dict)  # case id -> one-line reason it was left out
    scored: int = 0  # computed in this call
    cached: int = 0  # taken from the cache


class CaseScorer:
    """One model on one device, ready to score volumes; built once per job (or per cluster actor)."""

    def __init__(self, model: LoadedModel, device: str, options: ScoringOptions):
        self.model, self.device, self.options = model, device, options
        self._predictor: Optional[Predictor] = None
        self._reference: Optional[KnowledgeReference] = None

    @property
    def predictor(self) -> Predictor:
        # Built on first use: a re-rank served from the cache never moves the network or probes its layers.
        if self._predictor is None:
            self._predictor = Predictor(self.model.network, self.model.config, self.device, self.options.precision)
        return self._predictor

    @property
    def reference(self) -> KnowledgeReference:
        if self._reference is None:  # read from the model's buffers: no pass, no move to the device
            self._reference = knowledge_reference(
                self.model.network,
                self.model.feature_prior,
                self.options.knowledge_source,
                self.model.reference_stats,
            )
        return self._reference

    def score(self, case_id: str, image) -> CaseSignals:
        return score_volume(self.predictor, case_id, image, self.reference, self.options.asd_rule)


def signal_keys(store: Datastore, scorer: CaseScorer, case_ids: List[str]):
    """(keys of cases whose image can be looked at, errors of those that cannot)."""
    keys: Dict[str, SignalKey] = {}
    errors: Dict[str, str] = {}
    model_version, options_key = scorer.model.version, scorer.options.cache_key(scorer.device)
    for case_id in case_ids:
        try:
            keys[case_id] = SignalKey(case_id, model_version, store.image_fingerprint(case_id), options_key)
        except AsfdaError as exc:
            errors[case_id] = str(exc).splitlines()[0]
    return keys, errors


class PoolFill:
    """Cached signals first, then newly scored cases committed as they arrive, whoever computes them (this
    process or cluster actors): the bookkeeping every pool scorer shares."""

    def __init__(
        self,
        store: Datastore,
        scorer: CaseScorer,
        case_ids: List[str],
        progress: Optional[ProgressFn] = None,
        should_yield: Optional[Callable[[], bool]] = None,
    ):
        self.case_ids, self.chunk = case_ids, max(1, scorer.options.chunk_size)
        self.progress, self.should_yield = progress, should_yield
        self.cache = SignalCache(store.root / "asfda.db")
        self.keys, self.errors = signal_keys(store, scorer, case_ids)
        self.found = self.cache.get_many(self.keys.values())
        self.missing = [c for c in case_ids if c in self.keys and c not in self.found]
        self.total, self.done, self.scored = len(case_ids), len(self.found) + len(self.errors), 0
        if progress:
            progress("score", self.done, self.total)

    def add(self, case_id: str, signal: Optional[CaseSignals], error: Optional[str] = None) -> None:
        """One finished case: its signal is committed at once, or its one-line error kept."""
        if signal is None:
            self.errors[case_id] = error or "not scored"
        else:
            self.cache.put(self.keys[case_id], signal)
            self.found[case_id] = signal
            self.scored += 1
        self.done += 1
        if self.progress:
            self.progress("score", self.done, self.total)
        if (
            signal is not None
            and self.should_yield
            and self.scored % self.chunk == 0
            and self.done < self.total
            and self.should_yield()
        ):
            raise Yielded(f"stepped aside for interactive work after {self.scored} newly scored cases")

    def result(self) -> PoolSignals:
        ordered = {c: self.found[c] for c in self.case_ids if c in self.found}
        fill_pool_mean_gaps(list(ordered.values()))
        return PoolSignals(ordered, self.errors, scored=self.scored, cached=len(ordered) - self.scored)


def score_pool(
    store: Datastore,
    scorer: CaseScorer,
    case_ids: List[str],
    progress: Optional[ProgressFn] = None,
    should_yield: Optional[Callable[[], bool]] = None,
) -> PoolSignals:
    """Signals of `case_ids` under the scorer's model; only cases missing from the cache are computed.

    Progress counts cached cases at once and every newly scored case as it finishes. `should_yield` is
    asked after every `chunk_size` newly scored cases; when it says so, `Yielded` is raised with the
    work so far safely in the cache. A cancelled job's process is killed: every case committed before
    stays in the cache as well.
    """
    fill = PoolFill(store, scorer, case_ids, progress, should_yield)
    for case in stream_cases(store.root, fill.missing, scorer.model.config, scorer.options.workers):
        signal = None if case.error is not None else scorer.score(case.case_id, case.image)
        fill.add(case.case_id, signal, case.error)
    return fill.result()


def add_epistemic(
    store: Datastore,
    scorer: CaseScorer,
    pool: PoolSignals,
    samples: int,
    progress: Optional[ProgressFn] = None,
) -> None:
    """MC-dropout epistemic scores for the pool's cases (cached like the signals), set in place."""
    cache = SignalCache(store.root / "asfda.db")
    keys, _ = signal_keys(store, scorer, list(pool.signals))
    missing = []
    for case_id, signal in pool.signals.items():
        signal.epistemic = cache.get_epistemic(keys[case_id], samples)
        if signal.epistemic is None:
            missing.append(case_id)
    done = len(pool.signals) - len(missing)
    for case in stream_cases(store.root, missing, scorer.model.config, scorer.options.workers):
        if case.error is None:
            value = scorer.predictor.mc_dropout_epistemic(case.image, samples)
            cache.put_epistemic(keys[case.case_id], samples, value)
            pool.signals[case.case_id].epistemic = value
        else:
            pool.errors[case.case_id] = case.error
        done += 1
        if progress:
            progress("mc_dropout", done, len(pool.signals))
    for case_id in [c for c, s in pool.signals.items() if s.epistemic is None]:
        pool.signals.pop(case_id)
