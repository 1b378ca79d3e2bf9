"""Score a pool on a Ray cluster: one actor per GPU (or per N CPUs), cases handed out as actors finish.

`RayPoolScorer(options)` is called like `score_pool` and returns the same `PoolSignals`. This process is
the coordinator and the only writer of the datastore: it looks the cache up with the same keys as the
single-process path, hands each actor at most `in_flight_per_actor` cases, submits the next case to
whichever actor returns (ray.wait), and commits every returned signal to the cache at once. A second
rank therefore reuses what either path scored, and a cancelled rank keeps what had come back.

The actors are owned by this process (not detached): when it is killed - a cancelled worker job - Ray
ends them and their tasks with it; on every normal exit they are killed explicitly.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from asfda.core.errors import AsfdaError
from asfda.data.datastore import Datastore
from asfda.models.inference import resolve_precision
from asfda.scoring.options import SIGNAL_FORMAT
from asfda.scoring.pool import CaseScorer, PoolFill, PoolSignals, ProgressFn
from asfda.scoring.ray_actor import CaseScoringActor, ImageInput, ScoredCase, ShippedFiles
from asfda.scoring.ray_options import DataAccess, RayOptions

ACTOR_PREFIX = "asfda-scorer-"  # named actors: `ray list actors` shows whose they are


@dataclass
class RayRunReport:
    """What the cluster did for one pool, for the job result and the command's summary line."""

    actors: List[dict] = field(default_factory=list)  # describe() of each actor that started
    retries: int = 0  # case submissions repeated because their actor died
    actor_deaths: int = 0
    scored: int = 0
    actor_seconds: float = 0.0  # read + prepare + score, summed over the actors
    wall_seconds: float = 0.0  # from the first submission to the last result

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        devices = sorted({a["device"] for a in self.actors}) or ["none"]
        nodes = len({a["node"] for a in self.actors})
        return (
            f"ray: {len(self.actors)} actors ({'/'.join(devices)}) on {nodes} node(s), {self.scored} scored in "
            f"{self.wall_seconds:.1f} s, {self.retries} retries after {self.actor_deaths} actor deaths"
        )


@contextmanager
def ray_connection(options: RayOptions):
    """Ray, connected: a running session is reused (tests, a notebook); one started here is shut down after."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    try:
        if options.local:
            # CPUs only: a GPU on this machine belongs to the worker's own queue.
            ray.init(address="local", num_gpus=0, include_dashboard=False)
        else:
            ray.init(address=options.address, include_dashboard=False)
    except Exception as exc:  # ConnectionError, ValueError... all mean the same to the user
        raise AsfdaError(f"cannot connect to Ray at {options.address!r}: {str(exc).splitlines()[0]}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _actor_plan(ray, options: RayOptions) -> Tuple[int, dict, str, int]:
    """(number of actors, their Ray options, their device, their torch threads)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if not options.local else 0
    cpus = max(1, int(options.cpus_per_actor))
    # Reading the next case during the current pass pays when the pass is on a GPU or the actor has a
    # spare core; a one-core CPU actor would only split its core between the two (measured: no gain).
    overlap = options.in_flight_per_actor if gpus or cpus > 1 else 1
    request = {"num_cpus": options.cpus_per_actor, "max_concurrency": overlap}
    if gpus:
        return options.actors or gpus, {**request, "num_gpus": 1}, "cuda", cpus
    count = options.actors or max(1, int(resources.get("CPU", 1) // options.cpus_per_actor))
    return count, {**request, "num_gpus": 0}, "cpu", cpus


def _models_source(ray, store: Datastore, version: str, options: RayOptions):
    if options.data == DataAccess.OBJECT_STORE:
        return ray.put(ShippedFiles.read(store.models.root / version))  # one copy in the object store for all
    return str(_on_nodes(store, store.models.root, options))


def _on_nodes(store: Datastore, path: Path, options: RayOptions) -> Path:
    """`path` as the nodes see it: under ASFDA_RAY_ROOT when the datastore is mounted elsewhere there."""
    if not options.root_on_nodes:
        return Path(path)
    try:
        return Path(options.root_on_nodes) / Path(path).relative_to(store.root)
    except ValueError:
        return Path(path)  # outside the datastore (a DICOMweb cache elsewhere): the same path everywhere


def start_actors(ray, store: Datastore, scorer: CaseScorer, options: RayOptions, report: RayRunReport) -> list:
    """Actors that loaded the model and answered; those not running after the start timeout are dropped."""
    count, resources, device, threads = _actor_plan(ray, options)
    # The precision the coordinator's device resolves to, whatever the actors' device: the cache key says
    # so, and a later single-process rank on this worker must find exactly these signals.
    scoring = replace(scorer.options, precision=resolve_precision(scorer.options.precision, scorer.device))
    remote = ray.remote(CaseScoringActor)
    models = _models_source(ray, store, scorer.model.version, options)
    run = uuid.uuid4().hex[:8]
    actors = [
        remote.options(
            name=f"{ACTOR_PREFIX}{run}-{i}",
            max_restarts=0,  # a dead actor's cases are retried on the others (see _Dispatch)
            max_task_retries=0,
            **resources,
        ).remote(models, scorer.model.version, scoring, device, threads)
        for i in range(count)
    ]
    probes = {actor.describe.remote(): actor for actor in actors}
    ready, waiting = ray.wait(list(probes), num_returns=len(probes), timeout=options.start_timeout_s)
    started, failures = [], []
    for ref in ready:
        try:
            info = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            failures.append(_actor_error(exc))
            continue
        if info["signal_format"] != SIGNAL_FORMAT:
            failures.append(f"node {info['node']} runs another asfda (signal format {info['signal_format']})")
            ray.kill(probes[ref])
            continue
        report.actors.append(info)
        started.append(probes[ref])
    for ref in waiting:
        ray.kill(probes[ref])
    if not started:
        reason = failures[0] if failures else f"none started within {options.start_timeout_s:.0f} s"
        raise AsfdaError(f"no Ray scoring actor could start ({count} asked, {resources}): {reason}")
    return started


def _actor_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    # Ray's message quotes the actor's own exception last; its final line is the user's reason.
    return text[-1] if text else type(cause).__name__


class _Dispatch:
    """Cases to actors as they free up; a dead actor's cases go back to the front of the queue."""

    def __init__(self, ray, store: Datastore, options: RayOptions, actors: list, report: RayRunReport):
        self.ray, self.store, self.options, self.actors, self.report = ray, store, options, actors, report
        self.pending: Deque[Tuple[str, int, Any]] = deque()  # (case id, tries so far, its input once made)
        self.in_flight: Dict[Any, Tuple[int, str, int, Any]] = {}  # result ref -> (actor, case id, tries, input)
        self.load = [0] * len(actors)
        self.alive = set(range(len(actors)))

    def _input(self, case_id: str) -> ImageInput:
        path = self.store.image_path(case_id)  # a DICOMweb source fetches here: the coordinator writes its cache
        if self.options.data == DataAccess.OBJECT_STORE:
            # Put once: a retry after an actor died sends the same object, not a second read.
            return self.ray.put(ShippedFiles.read(path))
        return str(_on_nodes(self.store, path, self.options))

    def _fill(self) -> Iterator[ScoredCase]:
        for index in sorted(self.alive, key=lambda i: self.load[i]):
            while self.load[index] < self.options.in_flight_per_actor and self.pending:
                case_id, tries, image = self.pending.popleft()
                if image is None:
                    try:
                        image = self._input(case_id)
                    except (AsfdaError, OSError) as exc:
                        yield ScoredCase(case_id, None, str(exc).splitlines()[0] or type(exc).__name__)
                        continue
                ref = self.actors[index].score.remote(case_id, image)
                self.in_flight[ref] = (index, case_id, tries, image)
                self.load[index] += 1

    def results(self, case_ids: List[str]) -> Iterator[ScoredCase]:
        """Every case once, in the order they finish: scored, or with the one-line reason it was not."""
        exceptions = self.ray.exceptions
        self.pending.extend((case_id, 0, None) for case_id in case_ids)
        while True:
            yield from self._fill()
            if not self.in_flight:
                return
            (ref,), _ = self.ray.wait(list(self.in_flight), num_returns=1)
            index, case_id, tries, image = self.in_flight.pop(ref)
            self.load[index] -= 1
            try:
                scored = self.ray.get(ref)
            except exceptions.RayActorError:
                if index in self.alive:
                    self.alive.discard(index)
                    self.report.actor_deaths += 1
                if tries >= self.options.max_retries:
                    yield ScoredCase(case_id, None, f"not scored: the Ray actor died on each of {tries + 1} tries")
                else:
                    self.report.retries += 1
                    self.pending.appendleft((case_id, tries + 1, image))
                if not self.alive and self.pending:
                    raise AsfdaError(
                        f"every Ray scoring actor died ({self.report.actor_deaths}); {len(self.pending)} cases were "
                        "not scored (see the Ray logs); a new rank resumes from the cache"
                    ) from None
                continue
            except exceptions.RayTaskError as exc:
                raise AsfdaError(f"scoring {case_id} failed on a Ray actor: {_actor_error(exc)}") from exc
            self.report.actor_seconds += scored.seconds
            yield scored


class RayPoolScorer:
    """Called like `score_pool(store, scorer, case_ids, progress, should_yield)`; `report` describes the last call."""

    def __init__(self, options: RayOptions):
        self.options = options
        self.report = RayRunReport()
        self.on_started: Optional[Callable[[list], None]] = None  # sees the actor handles (tests, tools)

    def __call__(
        self,
        store: Datastore,
        scorer: CaseScorer,
        case_ids: List[str],
        progress: Optional[ProgressFn] = None,
        should_yield: Optional[Callable[[], bool]] = None,
    ) -> PoolSignals:
        report = self.report = RayRunReport()
        fill = PoolFill(store, scorer, case_ids, progress, should_yield)
        if fill.missing:
            with ray_connection(self.options) as ray:
                actors = start_actors(ray, store, scorer, self.options, report)
                started = time.perf_counter()
                try:
                    if self.on_started:
                        self.on_started(actors)
                    for result in _Dispatch(ray, store, self.options, actors, report).results(fill.missing):
                        fill.add(result.case_id, result.signal, result.error)  # committed as it arrives
                finally:
                    report.scored = fill.scored
                    report.wall_seconds = time.perf_counter() - started
                    for actor in actors:
                        ray.kill(actor)  # at once, also on Yielded or an error: no task outlives the rank
        return fill.result()
