"""What each adaptation round cost and bought: cases, annotated slices, annotator minutes, Dice per minute.

A round is a model version that records the labels it trained on (`metrics.trained_labels`, see
label_sets.py); its labels are those new to it: absent from its parent's set, or changed since (a corrected
label is another label). Each label is found among its case's revisions by its file's hash, and the effort
record sent with that revision (asfda.data.effort) gives its minutes and slices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from asfda.core.annotation_cost import thickest_axis
from asfda.data.datastore import Datastore
from asfda.data.effort import EFFORT
from asfda.data.label_masks import MASK_SUFFIX
from asfda.data.label_revisions import LabelRevisions
from asfda.data.leases import LeaseBook
from asfda.io.volumes import load_volume
from asfda.loop.label_sets import TRAINED_LABELS
from asfda.models.store import ModelVersion

DiceOf = Callable[[str], float]  # model version -> mean Dice on the reference labels


@dataclass
class LabelCost:
    case_id: str
    revision: Optional[str]  # None: no stored revision has this label's hash any more
    slices: int
    slices_from: str  # effort | sparse | volume: where the slice count came from
    minutes: Optional[float]  # None: no effort record was sent with the label


@dataclass
class RoundReport:
    version: str
    parent: Optional[str]
    created: str
    labels: List[LabelCost]
    dice: Optional[float] = None  # mean Dice of this version on the references
    parent_dice: Optional[float] = None
    cumulative_minutes: Optional[float] = None  # along the version's ancestry, this round included

    @property
    def cases(self) -> int:
        return len(self.labels)

    @property
    def annotated_slices(self) -> int:
        return sum(c.slices for c in self.labels)

    @property
    def minutes(self) -> Optional[float]:
        """Sum of the labels' active minutes; None ("unknown") unless every label of the round has a record:
        a partial sum would understate the round's cost."""
        known = [c.minutes for c in self.labels]
        return None if any(m is None for m in known) else float(sum(known))

    @property
    def dice_gain(self) -> Optional[float]:
        return None if self.dice is None or self.parent_dice is None else self.dice - self.parent_dice

    @property
    def dice_per_minute(self) -> Optional[float]:
        gain, minutes = self.dice_gain, self.minutes
        return None if gain is None or not minutes else gain / minutes

    def to_dict(self) -> Dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "created": self.created,
            "cases": self.cases,
            "annotated_slices": self.annotated_slices,
            "minutes": self.minutes,
            "minutes_known": sum(c.minutes is not None for c in self.labels),
            "cumulative_minutes": self.cumulative_minutes,
            "dice": self.dice,
            "parent_dice": self.parent_dice,
            "dice_gain": self.dice_gain,
            "dice_per_minute": self.dice_per_minute,
            "labels": [asdict(c) for c in self.labels],
        }


@dataclass
class EffortReport:
    rounds: List[RoundReport]
    baseline: Optional[str] = None  # the version the first round started from (an import)
    baseline_dice: Optional[float] = None
    dice: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "baseline": self.baseline,
            "baseline_dice": self.baseline_dice,
            "rounds": [r.to_dict() for r in self.rounds],
        }

    def curve(self) -> List[tuple]:
        """(cumulative minutes, Dice) from the baseline through each round whose minutes are known."""
        points = [(0.0, self.baseline_dice)] if self.baseline_dice is not None else []
        points += [(r.cumulative_minutes, r.dice) for r in self.rounds if r.cumulative_minutes is not None]
        return [p for p in points if p[1] is not None]


def _trained(meta: ModelVersion) -> Optional[Dict[str, str]]:
    trained = (meta.metrics or {}).get(TRAINED_LABELS)
    return trained if isinstance(trained, dict) else None


class _Costs:
    """Looks labels up among their case's revisions and audit entries (read once per case)."""

    def __init__(self, store: Datastore):
        self.store = store
        self.revisions = LabelRevisions(store.root, store.state.path)
        self.leases = LeaseBook(store.state.path, root=store.root)
        self._by_case: Dict[str, tuple] = {}

    def _case(self, case_id: str) -> tuple:
        if case_id not in self._by_case:
            details = {
                e["detail"].get("revision"): e["detail"]
                for e in self.leases.audit(case_id)
                if e["action"] == "label submitted" and e.get("detail")
            }
            self._by_case[case_id] = (self.revisions.revisions(case_id), details)
        return self._by_case[case_id]

    def cost(self, case_id: str, identity: str) -> LabelCost:
        revisions, details = self._case(case_id)
        label_hash = identity.split("+")[0]
        matching = [r for r in revisions if r.sha256.startswith(label_hash)]
        revision = matching[-1].revision if matching else None
        detail = details.get(revision, {}) if revision else {}
        effort = detail.get(EFFORT) if isinstance(detail.get(EFFORT), dict) else None
        minutes = float(effort["active_seconds"]) / 60.0 if effort else None
        slices, source = self._slices(case_id, revision, detail, effort)
        return LabelCost(case_id, revision, slices, source, minutes)

    def _slices(self, case_id, revision, detail, effort) -> tuple:
        if effort is not None and effort.get("slices_changed") is not None:
            return int(effort["slices_changed"]), "effort"
        coverage = detail.get("requested_slices")
        if isinstance(coverage, dict) and isinstance(coverage.get("done"), list):
            return len(coverage["done"]), "sparse"
        geometry = self.store.geometry(case_id)
        axis = thickest_axis(geometry.spacing)
        mask = self.revisions.history_dir(case_id) / f"{revision}{MASK_SUFFIX}" if revision else None
        if mask is not None and mask.is_file():  # a sparse label without requested slices: its annotated ones
            annotated = np.moveaxis(np.asarray(load_volume(mask)), axis, 0).reshape(geometry.shape[axis], -1)
            return int(annotated.any(axis=1).sum()), "sparse"
        return int(geometry.shape[axis]), "volume"


def adaptation_rounds(store: Datastore) -> List[RoundReport]:
    """Every version that records its label set, oldest first, with the cost of its new labels."""
    versions = {v.version: v for v in store.models.versions()}
    costs = _Costs(store)
    rounds = []
    for meta in sorted(versions.values(), key=lambda v: (v.created, v.version)):
        trained = _trained(meta)
        if trained is None:
            continue
        parent = versions.get(meta.parent) if meta.parent else None
        before = (_trained(parent) if parent else None) or {}
        new = sorted(c for c, identity in trained.items() if before.get(c) != identity)
        labels = [costs.cost(c, trained[c]) for c in new]
        rounds.append(RoundReport(meta.version, meta.parent, meta.created, labels))
    _accumulate(rounds)
    return rounds


def _accumulate(rounds: List[RoundReport]) -> None:
    # Along each version's ancestry: a rejected sibling's minutes are not on its cousin's curve.
    total: Dict[str, Optional[float]] = {}
    for r in rounds:
        before = total[r.parent] if r.parent in total else 0.0  # a parent that is no round: the start
        minutes = r.minutes
        r.cumulative_minutes = None if before is None or minutes is None else before + minutes
        total[r.version] = r.cumulative_minutes


def effort_report(store: Datastore, dice_of: Optional[DiceOf] = None) -> EffortReport:
    """The rounds; with `dice_of` (the loop's evaluate on reference labels) each version's Dice and its
    parent's, so a round's Dice gained per annotator-minute."""
    rounds = adaptation_rounds(store)
    report = EffortReport(rounds)
    if rounds:
        first = rounds[0]
        report.baseline = first.parent
    if dice_of is None:
        return report
    wanted = {r.version for r in rounds} | {r.parent for r in rounds if r.parent}
    report.dice = {v: float(dice_of(v)) for v in sorted(wanted)}
    for r in rounds:
        r.dice = report.dice.get(r.version)
        r.parent_dice = report.dice.get(r.parent) if r.parent else None
    report.baseline_dice = report.dice.get(report.baseline) if report.baseline else None
    return report


def mean_dice(summary) -> float:
    """Mean over foreground labels of an Evaluation's per-label mean Dice."""
    values = [s.mean_dice for s in summary]
    return float(np.mean(values)) if values else float("nan")
