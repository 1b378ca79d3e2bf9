"""The validation gate: a new version becomes active only if it segments held-out clinician labels at least as
well as its parent.

Few labels (up to `GateOptions.few_labels`): k-fold. k candidates are trained, each without one fold, and
their Dice on the fold they never saw is pooled over all labels; the published version is then trained on
every label (the gate judges the recipe on this data, the published model gets every label). More labels: one
held-out share; the candidate trained without it is both the one judged and the one published. One label:
nothing can be held out, so the round is not gated and says so.

Only labels the parent never trained on are held out (`unseen`): from the second round on the parent has seen
the earlier rounds' labels, and its Dice on them is not a held-out figure. The k folds (or the held-out share)
are drawn from the unseen labels; every label still trains the candidates. Fewer than two unseen labels: not
gated, and the decision says why.

Below `GateOptions.decide_from_labels` labels the k-fold verdict is advisory: reported with the version, not
enforced. On the label benchmark's hospital pool (docs/benchmarks.md, "The validation gate") the k-fold
estimate from 2-8 labels did not tell better versions from worse ones: 11 of its 12 rejections were versions
better than their parent on the validation split and 7 of 43 acceptances were worse, because each fold model
misses the labels of its fold, and with few, diverse picks (one rare protocol volume) that is a different
model from the one published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch import nn

from asfda.adapt.finetune import TrainingItem

ProgressFn = Callable[[str, int, int, Optional[float]], None]
# (labels to train on, progress) -> (trained copy of the parent, final loss figures)
TrainFn = Callable[[List[TrainingItem], Optional[ProgressFn]], Tuple[nn.Module, Dict[str, float]]]
DiceFn = Callable[[nn.Module, List[TrainingItem]], float]  # mean foreground Dice over the items


@dataclass
class GateOptions:
    enabled: bool = True
    folds: int = 3  # k of the k-fold estimate (at most one fold per label)
    few_labels: int = 10  # up to this many labels: k-fold; above: one held-out share
    holdout_fraction: float = 0.2  # share of the labels held out above `few_labels` (at least 2 volumes)
    tolerance: float = 0.0  # activate when candidate Dice >= parent Dice - tolerance
    # With fewer clinician labels than this a k-fold "below the parent" verdict is advisory (0: always enforced).
    decide_from_labels: int = 11


@dataclass
class GateDecision:
    activate: bool
    reason: str
    method: str  # "k-fold", "holdout", "not gated"
    candidate_dice: Optional[float] = None
    parent_dice: Optional[float] = None
    held_out: List[str] = field(default_factory=list)
    folds: int = 0
    advisory: bool = False  # the verdict was "below the parent" but too few labels to enforce it

    def to_dict(self) -> Dict:
        return asdict(self)


@dataclass
class GatedTraining:
    network: nn.Module  # the model to publish
    losses: Dict[str, float]
    decision: GateDecision


def folds_of(case_ids: Sequence[str], folds: int, seed: int) -> List[List[str]]:
    """Split labels into min(folds, n) folds of near-equal size, shuffled by `seed`."""
    order = [case_ids[i] for i in np.random.default_rng(seed).permutation(len(case_ids))]
    k = max(2, min(folds, len(order)))
    return [sorted(order[i::k]) for i in range(k)]


def _share(progress: Optional[ProgressFn], index: int, count: int) -> Optional[ProgressFn]:
    """Training `index` of `count` reports as one share of a single "train" progress bar."""
    if progress is None:
        return None

    def report(stage: str, step: int, total: int, loss: Optional[float]) -> None:
        progress(stage, index * total + step, count * total, loss)

    return report


def _compare(
    candidate: float, parent: float, tolerance: float, advisory: Optional[str] = None
) -> Tuple[bool, str, bool]:
    """(activate, reason, advisory). With `advisory` (why the verdict does not decide), a "below the parent"
    verdict is reported with it and does not keep the version inactive."""
    if not np.isfinite(candidate):
        return False, "the candidate's held-out Dice could not be computed", False
    if candidate >= parent - tolerance:
        return True, f"held-out Dice {candidate:.4f} is not below the parent's {parent:.4f}", False
    below = f"held-out Dice {candidate:.4f} is below the parent's {parent:.4f}"
    if advisory is None:
        return False, f"{below}: kept inactive", False
    return True, f"{below}; advisory only ({advisory}): activated, the parent stays available for rollback", True


def gated_training(
    labeled: List[TrainingItem],
    parent: nn.Module,
    train: TrainFn,
    dice: DiceFn,
    options: GateOptions,
    seed: int = 0,
    progress: Optional[ProgressFn] = None,
    unseen: Optional[Sequence[str]] = None,
) -> GatedTraining:
    """Train the version to publish and decide whether it may become active.

    Args:
        labeled: every clinician label (all of them train the published version).
        parent: the version the candidates start from; train / dice: how to train and score.
        unseen: case ids of the labels the parent never trained on (None: all of them); only these are held out.
    Returns:
        the network to publish, its losses and the gate's decision (held-out ids, Dice figures, advisory flag).
    """
    if not options.enabled:
        network, losses = train(labeled, progress)
        return GatedTraining(network, losses, GateDecision(True, "validation gate switched off", "not gated"))
    by_id = {item.case_id: item for item in labeled}
    eligible = sorted(by_id) if unseen is None else sorted(set(unseen) & set(by_id))
    if len(eligible) < 2:
        network, losses = train(labeled, progress)
        if len(labeled) < 2:
            reason = "only one clinician label: nothing to hold out, so this version is not gated"
        else:
            reason = (
                f"only {len(eligible)} of {len(labeled)} labels are new to the parent (it trained on the others, "
                "so its Dice on them is not held out): this version is not gated"
            )
        return GatedTraining(network, losses, GateDecision(True, reason, "not gated"))
    if len(eligible) <= options.few_labels:
        split = folds_of(eligible, options.folds, seed)
        held_dice, parent_dice = [], []
        for index, fold in enumerate(split):
            candidate, _ = train([by_id[c] for c in by_id if c not in fold], _share(progress, index, len(split) + 1))
            held = [by_id[c] for c in fold]
            held_dice.append(dice(candidate, held) * len(held))
            parent_dice.append(dice(parent, held) * len(held))
        candidate_mean, parent_mean = sum(held_dice) / len(eligible), sum(parent_dice) / len(eligible)
        too_few = len(eligible) < options.decide_from_labels
        note = f"a k-fold verdict from {len(eligible)} held-out labels decides from {options.decide_from_labels}"
        ok, why, advisory = _compare(candidate_mean, parent_mean, options.tolerance, note if too_few else None)
        network, losses = train(labeled, _share(progress, len(split), len(split) + 1))
        decision = GateDecision(
            ok,
            f"{len(split)}-fold {why}",
            "k-fold",
            candidate_mean,
            parent_mean,
            eligible,
            len(split),
            advisory,
        )
        return GatedTraining(network, losses, decision)
    n_held = max(2, int(round(options.holdout_fraction * len(eligible))))
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]
    held_ids = sorted(order[:n_held])
    network, losses = train([by_id[c] for c in by_id if c not in held_ids], progress)
    held = [by_id[c] for c in held_ids]
    candidate_mean, parent_mean = dice(network, held), dice(parent, held)
    ok, why, _ = _compare(candidate_mean, parent_mean, options.tolerance)
    decision = GateDecision(ok, f"{n_held} held-out labels: {why}", "holdout", candidate_mean, parent_mean, held_ids, 1)
    return GatedTraining(network, losses, decision)
