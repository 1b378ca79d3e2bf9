"""The demo loop: source model -> shifted target pool -> rank -> simulated annotator -> adapt -> Dice."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from asfda.core.annotation_cost import NO_COST, thickest_axis, volume_cost
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


ARMS = (
    ("asfda + pseudo-labels", Strategy.ASFDA, True),
    ("random + pseudo-labels", Strategy.RANDOM, True),
    ("random, labels only", Strategy.RANDOM, False),
)


def _run_arm(root: Path, data, network, prior, config, settings: DemoSettings, name, strategy, pseudo) -> ArmResult:
    store = Datastore(root)
    write_images(data.pool, store.images_dir, data.anatomy.affine)
    store.models.publish(network, config, parent=None, feature_prior=prior, note="demo source model")
    session = LoopSession(store, SessionSettings(device="cpu"), progress=console_progress(f"{name}: rank, adapt"))
    done = simulated_round(
        session,
        RankRequest(strategy=strategy.value, k=settings.k, seed=settings.seed),
        # The demo judges every arm on a labelled test set; the gate's k-fold trainings would only
        # multiply its run time by k + 1.
        AdaptRequest(steps=settings.adapt_steps, seed=settings.seed, use_pseudo_labels=pseudo, gate_enabled=False),
        truth={s.case_id: s.label for s in data.pool},
        affine_of=lambda _case: data.anatomy.affine,
    )
    adapted = store.models.load(done.adaptation.version)
    dice = dice_per_subject(adapted.network, config, data.test)
    truth = {s.case_id: s.label for s in data.pool}
    axis = thickest_axis(np.linalg.norm(data.anatomy.affine[:3, :3], axis=0))
    cost = sum((volume_cost(truth[c], axis) for c in done.picks), NO_COST)
    return ArmResult(
        name,
        done.picks,
        float(np.mean(list(dice.values()))),
        by_severity(dice, data.severity),
        done.adaptation.version,
        len(done.adaptation.pseudo_cases),
        by_protocol(dice, data.protocol),
        cost.to_dict(),
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
    for index, (name, strategy, pseudo) in enumerate(ARMS):
        arm_root = out / ("datastore" if index == 0 else f"control-{strategy.value}-{'pseudo' if pseudo else 'labels'}")
        report.arms.append(_run_arm(arm_root, data, network, prior, config, settings, name, strategy, pseudo))
    report.seconds = time.monotonic() - started
    (out / "demo-report.json").write_text(json.dumps(asdict(report), indent=2))
    from asfda.demo.plot import plot_demo

    plot_demo(out / "datastore", data, network, config, report, out / "demo.png")
    return report


def _groups(by_protocol: Dict[str, float], by_severity: Dict[str, float]) -> str:
    groups = by_protocol or by_severity  # a hospital pool is read by protocol, a uniform one by severity band
    return "  ".join(f"{b} {v:.3f}" for b, v in groups.items())


def format_report(report: DemoReport) -> str:
    pool = "a hospital-composed pool (routine protocol + a rare one)" if report.pool == "hospital" else "a pool"
    lines = [
        f"source model Dice on source-domain volumes: {report.source_dice_on_source:.3f}",
        f"target test Dice before adaptation:          {report.dice_before:.3f}  "
        + _groups(report.dice_before_by_protocol, report.dice_before_by_severity),
        f"after adapting with k={report.k} clinician labels picked from {pool}:",
    ]
    for arm in report.arms:
        cost = arm.cost or {}
        lines.append(
            f"  {arm.name:<26} Dice {arm.dice:.3f} ({arm.dice - report.dice_before:+.3f})  "
            f"{_groups(arm.dice_by_protocol, arm.dice_by_severity)}"
            f"  [{cost.get('slices', 0)} slices annotated, about {cost.get('minutes', 0.0):.0f} min; "
            f"picks: {', '.join(arm.picks)}; {arm.pseudo_labels} pseudo-labels]"
        )
    lines.append(
        "minutes: estimated for correcting the model's draft slice by slice (docs/benchmarks.md, 'Clinician cost')"
    )
    lines.append(f"finished in {report.seconds:.0f} s")
    return "\n".join(lines)
