"""The demo loop: source model -> shifted target pool -> rank -> simulated annotator -> adapt -> Dice."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from asfda.core.names import Strategy
from asfda.core.progress import console_progress
from asfda.data.datastore import Datastore
from asfda.demo.data import make_demo_data, write_images
from asfda.demo.evaluate import by_protocol, by_severity, dice_per_subject
from asfda.demo.source_model import demo_model_config, train_source_model
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings, simulated_round
from asfda.synth.anatomy import mni152


@dataclass
class ArmResult:
    name: str
    picks: List[str]
    dice: float
    dice_by_severity: Dict[str, float]
    version: str
    pseudo_labels: int
    dice_by_protocol: Dict[str, float] = field(default_factory=dict)
    cost: Dict = field(default_factory=dict)  # annotated slices and estimated minutes (asfda.core.annotation_cost)
    slices_per_volume: int = 0  # a sparse arm's slices per pick; 0: whole volumes


@dataclass
class DemoReport:
    k: int
    seed: int
    source_dice_on_source: float
    dice_before: float
    dice_before_by_severity: Dict[str, float]
    arms: List[ArmResult] = field(default_factory=list)
    seconds: float = 0.0
    dice_before_by_protocol: Dict[str, float] = field(default_factory=dict)
    pool: str = "hospital"


@dataclass
class DemoSettings:
    k: int = 4
    seed: int = 0
    n_source: int = 16
    n_pool: int = 30
    n_test: int = 10
    source_steps: int = 300
    adapt_steps: int = 80
    task: str = "brain"
    # The hospital mix (as the label benchmark's `--pool-mix hospital`): a routine protocol and a rare one in 10 %
    # of the pool; the test set holds 30 % rare volumes so the rare protocol's Dice is measured. None: uniform.
    rare_share: Optional[float] = 0.1
    rare_share_test: Optional[float] = 0.3
    # The sparse arm beside the whole-volume one: asfda + pseudo-labels on `sparse_k` volumes (None: 3 k) of
    # `sparse_slices` evenly spaced slices each (12 x 4 = 48 slices at k = 4: a quarter of the 4 whole volumes'
    # 4 x 48); sparse_k 0 leaves the arm out.
    sparse_k: Optional[int] = None
    sparse_slices: int = 4

    def sparse_volumes(self) -> int:
        return 3 * self.k if self.sparse_k is None else self.sparse_k


@dataclass(frozen=True)
class Arm:
    name: str
    strategy: Strategy
    pseudo: bool
    sparse: bool = False  # sparse_k volumes of sparse_slices slices instead of k whole volumes


ARMS = (
    Arm("asfda + pseudo-labels", Strategy.ASFDA, True),
    Arm("asfda + PL, sparse", Strategy.ASFDA, True, sparse=True),
    Arm("random + pseudo-labels", Strategy.RANDOM, True),
    Arm("random, labels only", Strategy.RANDOM, False),
)


def _run_arm(root: Path, data, network, prior, config, settings: DemoSettings, arm: Arm) -> ArmResult:
    store = Datastore(root)
    write_images(data.pool, store.images_dir, data.anatomy.affine)
    store.models.publish(network, config, parent=None, feature_prior=prior, note="demo source model")
    session = LoopSession(store, SessionSettings(device="cpu"), progress=console_progress(f"{arm.name}: rank, adapt"))
    k, slices = (settings.sparse_volumes(), settings.sparse_slices) if arm.sparse else (settings.k, 0)
    truth = {s.case_id: s.label for s in data.pool}
    done = simulated_round(
        session,
        RankRequest(strategy=arm.strategy.value, k=k, seed=settings.seed, slices_per_volume=slices),
        # The demo judges every arm on a labelled test set; the gate's k-fold trainings would only
        # multiply its run time by k + 1.
        AdaptRequest(steps=settings.adapt_steps, seed=settings.seed, use_pseudo_labels=arm.pseudo, gate_enabled=False),
        truth=truth,
        affine_of=lambda _case: data.anatomy.affine,
    )
    adapted = store.models.load(done.adaptation.version)
    dice = dice_per_subject(adapted.network, config, data.test)
    return ArmResult(
        arm.name,
        done.picks,
        float(np.mean(list(dice.values()))),
        by_severity(dice, data.severity),
        done.adaptation.version,
        len(done.adaptation.pseudo_cases),
        by_protocol(dice, data.protocol),
        done.cost.to_dict(),  # the simulated annotator's slices: every slice of a whole pick, the requested ones
        slices,
    )


def run_demo(out: Path, settings: DemoSettings) -> DemoReport:
    started = time.monotonic()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"building demo data from MNI152 anatomy (task: {settings.task}) ...", flush=True)
    anatomy = mni152(task=settings.task)
    data = make_demo_data(
        anatomy,
        settings.n_source,
        settings.n_pool,
        settings.n_test,
        settings.seed,
        settings.rare_share,
        settings.rare_share_test,
    )
    config = demo_model_config(anatomy.labels, anatomy.image.shape)
    network, prior = train_source_model(
        data.source, config, settings.source_steps, settings.seed, progress=console_progress("source model: train")
    )
    source_dice = dice_per_subject(network, config, data.source[-4:])
    before = dice_per_subject(network, config, data.test)
    report = DemoReport(
        settings.k,
        settings.seed,
        float(np.mean(list(source_dice.values()))),
        float(np.mean(list(before.values()))),
        by_severity(before, data.severity),
        dice_before_by_protocol=by_protocol(before, data.protocol),
        pool="hospital" if settings.rare_share is not None else "uniform",
    )
    for index, arm in enumerate(a for a in ARMS if not a.sparse or settings.sparse_volumes() > 0):
        kind = "sparse" if arm.sparse else ("pseudo" if arm.pseudo else "labels")
        arm_root = out / ("datastore" if index == 0 else f"control-{arm.strategy.value}-{kind}")
        report.arms.append(_run_arm(arm_root, data, network, prior, config, settings, arm))
    report.seconds = time.monotonic() - started
    (out / "demo-report.json").write_text(json.dumps(asdict(report), indent=2))
    from asfda.demo.plot import plot_demo

    plot_demo(out / "datastore", data, network, config, report, out / "demo.png")
    return report


def _groups(by_protocol: Dict[str, float], by_severity: Dict[str, float]) -> str:
    groups = by_protocol or by_severity  # a hospital pool is read by protocol, a uniform one by severity band
    return "  ".join(f"{b} {v:.3f}" for b, v in groups.items())


def _labelled(arm: ArmResult) -> str:
    if arm.slices_per_volume:
        return f"{len(arm.picks)} volumes x {arm.slices_per_volume} slices"
    return f"{len(arm.picks)} whole volumes"


def format_report(report: DemoReport) -> str:
    pool = "a hospital-composed pool (routine protocol + a rare one)" if report.pool == "hospital" else "a pool"
    lines = [
        f"source model Dice on source-domain volumes: {report.source_dice_on_source:.3f}",
        f"target test Dice before adaptation:          {report.dice_before:.3f}  "
        + _groups(report.dice_before_by_protocol, report.dice_before_by_severity),
        f"after adapting with k={report.k} clinician labels (or a sparse arm's slices) picked from {pool}:",
    ]
    for arm in report.arms:
        cost = arm.cost or {}
        lines.append(
            f"  {arm.name:<26} Dice {arm.dice:.3f} ({arm.dice - report.dice_before:+.3f})  "
            f"{_groups(arm.dice_by_protocol, arm.dice_by_severity)}"
            f"  [{_labelled(arm)}: {cost.get('slices', 0)} slices annotated, about {cost.get('minutes', 0.0):.0f} min; "
            f"picks: {', '.join(arm.picks)}; {arm.pseudo_labels} pseudo-labels]"
        )
    lines.append(
        "minutes: estimated for correcting the model's draft slice by slice (docs/benchmarks.md, 'Clinician cost')"
    )
    lines.append(f"finished in {report.seconds:.0f} s")
    return "\n".join(lines)
