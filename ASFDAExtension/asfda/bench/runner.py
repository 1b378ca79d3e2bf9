"""Execute one run through the product's own code: a Datastore folder and a LoopSession, whose simulated
annotator round (asfda.loop.simulated_round) ranks, saves the picks' true labels as final labels and adapts
(pseudo-labels, fine-tuning, validation gate), repeated per round; then the Dice of the ACTIVE version."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from asfda.bench.context import BenchContext, group_means
from asfda.bench.spec import RunSpec
from asfda.core.annotation_cost import NO_COST
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.label_masks import has_mask
from asfda.demo.data import write_images
from asfda.demo.evaluate import by_severity, class_dice_per_subject
from asfda.io.volumes import load_volume
from asfda.loop import AdaptRequest, LoopSession, RankRequest, SessionSettings, simulated_round


def rank_request(spec: RunSpec, k: int, seed: int) -> RankRequest:
    r = spec.ranking
    return RankRequest(
        strategy=spec.strategy,
        k=k,
        seed=seed,
        alpha=float(r["alpha"]),
        rule=r["rule"],
        embedding=r["embedding"],
        cold_start_medoid=bool(r["cold_start_medoid"]),
        slices_per_volume=int(spec.slices_per_volume),
    )


def _template(ctx: BenchContext, replicate: int) -> Path:
    """One datastore per pool with its images and the source model as v0001; every run starts from a copy.
    Keyed by the settings fingerprint too: pools of other settings (another pool mix of the cost axis, in this
    process or another one on the same results folder) are other images and another source model."""
    folder = ctx.scratch / f"template-{ctx.settings.fingerprint()}-pool{replicate}"
    if (folder / ".complete").exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # a template cut short by a kill
    store = Datastore(folder)
    pool = ctx.pool(replicate)
    for subject in pool.cohort.subjects:
        write_images([subject], store.images_dir, ctx.affine[pool.cohort.anatomy[subject.case_id]])
    store.models.publish(
        ctx.network,
        ctx.config,
        parent=None,
        feature_prior=ctx.prior,
        note="bench source model",
        reference_stats=ctx.reference,
    )
    (folder / ".complete").touch()
    return folder


def _pseudo_accuracy(store: Datastore, cases: List[str], truth: Dict[str, np.ndarray]) -> float:
    """Share of voxels of the saved pseudo-labels (whole volumes, masked voxels included) that match the truth."""
    right = total = 0
    for case in cases:
        saved = np.asarray(load_volume(store.label_path(case, LabelTag.PSEUDO)))
        right += int((saved.astype(np.int64) == truth[case]).sum())
        total += saved.size
    return right / total if total else float("nan")


def execute(ctx: BenchContext, spec: RunSpec) -> Dict:
    started = time.monotonic()
    pool = ctx.pool(spec.seed)
    truth = {s.case_id: s.label.astype(np.int64) for s in pool.cohort.subjects}
    root = ctx.scratch / f"run-{spec.key(ctx.settings.fingerprint())}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(_template(ctx, spec.seed), root)
    try:
        store = Datastore(root)
        session = LoopSession(store, SessionSettings(device="cpu"))
        labeled_ids: List[str] = []
        per_round = max(1, spec.k // spec.rounds)
        steps = max(1, ctx.settings.adapt_steps // spec.rounds)  # multi-round spends the same total steps
        gates: List[Dict] = []
        knowledge: set = set()  # what DKD measured against (none for strategies that score nothing)
        n_pseudo, pseudo_acc = 0, float("nan")
        cost, sparse_labels = NO_COST, 0
        for round_index in range(spec.rounds):
            seed = spec.seed * 100 + round_index
            done = simulated_round(
                session,
                rank_request(spec, per_round, seed),
                AdaptRequest(
                    steps=steps,
                    seed=seed,
                    use_pseudo_labels=spec.pseudo,
                    gate_enabled=spec.validation_gate,
                    gate_decide_from_labels=ctx.settings.gate_decide_from_labels,
                    gate_verdict_after=False,  # the benchmark reads every verdict with its round
                    finetune_overrides=dict(spec.guards),
                    reliability_overrides=dict(spec.reliability) if spec.pseudo else {},
                ),
                truth,
                lambda case: ctx.affine[pool.cohort.anatomy[case]],
                author="bench",
            )
            knowledge = {r.knowledge_source for r in store.state.scores(spec.strategy) if r.knowledge_source}
            labeled_ids.extend(done.picks)
            result = done.adaptation
            cost, sparse_labels = cost + done.cost, int(result.metrics.get("sparse_labels", 0))
            gates.append({"version": result.version, "activated": result.activated, "reason": result.gate["reason"]})
            n_pseudo, pseudo_acc = len(result.pseudo_cases), _pseudo_accuracy(store, result.pseudo_cases, truth)
        network = store.models.load().network  # what the clinician would be using: the ACTIVE version
        extra = {"gate": gates, "active_version": store.models.active_version(), "knowledge_source": sorted(knowledge)}
        # The clinician's cost (core.annotation_cost's per-slice model) and what the last round trained on.
        extra.update(
            annotated_slices=cost.slices,
            structure_slices=cost.structure_slices,
            annotation_minutes=cost.minutes,
            sparse_labels=sparse_labels,
            label_masks=sum(has_mask(store, c) for c in labeled_ids),
        )
        if not gates[-1]["activated"]:
            # What the gate cost: the Dice the kept-inactive version would have had (reported, never scored).
            kept = store.models.load(gates[-1]["version"]).network
            extra["inactive_version_val_dice"] = _mean_dice(ctx, kept, ctx.val)
            extra["inactive_version_test_dice"] = _mean_dice(ctx, kept, ctx.test)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return evaluate(ctx, network, spec, labeled_ids, n_pseudo, pseudo_acc, time.monotonic() - started, extra)


def _subject_dice(ctx: BenchContext, network, cohort) -> Tuple[Dict[str, Dict[str, float]], Dict[str, float]]:
    """Per subject: the Dice of each class, and their mean."""
    per_class = class_dice_per_subject(network, ctx.config, cohort.subjects)
    return per_class, {case: float(np.mean(list(d.values()))) for case, d in per_class.items()}


def _mean_dice(ctx: BenchContext, network, cohort) -> float:
    return float(np.mean(list(_subject_dice(ctx, network, cohort)[1].values())))


def evaluate(ctx: BenchContext, network, spec: RunSpec, picks, n_pseudo, pseudo_acc, seconds, extra=None) -> Dict:
    pool = ctx.pool(spec.seed) if picks else None
    row = {**spec.to_dict(), "picks": list(picks), "n_pseudo": n_pseudo, "pseudo_voxel_accuracy": pseudo_acc}
    row.update(extra or {})
    # Annotation cost: labelled volumes (k) and the foreground voxels a clinician had to draw in them.
    row["labelled_volumes"] = len(picks)
    row["labelled_foreground_voxels"] = 0
    if pool is not None:
        counts: Dict[str, int] = {}
        labels = {s.case_id: s.label for s in pool.cohort.subjects}
        for case in picks:
            counts[pool.cohort.anatomy[case]] = counts.get(pool.cohort.anatomy[case], 0) + 1
            row["labelled_foreground_voxels"] += int((labels[case] > 0).sum())
        row["picks_by_anatomy"] = counts
        if pool.cohort.protocol:
            row["picks_rare"] = sum(pool.cohort.protocol[c] == "rare" for c in picks)
    for split, cohort in (("val", ctx.val), ("test", ctx.test)):
        per_class, dice = _subject_dice(ctx, network, cohort)
        row[f"{split}_dice"] = float(np.mean(list(dice.values())))
        if ctx.config.out_channels > 2:  # a multi-class task: the Dice of each foreground class too
            row[f"{split}_by_class"] = {
                name: float(np.mean([d[name] for d in per_class.values()])) for name in next(iter(per_class.values()))
            }
        row[f"{split}_by_anatomy"] = group_means(dice, cohort.anatomy)
        row[f"{split}_by_severity"] = by_severity(dice, cohort.severity)
        if cohort.protocol:
            row[f"{split}_by_protocol"] = group_means(dice, cohort.protocol)
    row["seconds"] = seconds
    return row
