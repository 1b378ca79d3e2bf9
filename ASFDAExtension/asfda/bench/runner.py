"""Execute one run: rank the pool -> reveal the picks' labels -> pseudo-label -> fine-tune -> Dice, per round."""

from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

from asfda.adapt.finetune import FinetuneOptions, TrainingItem, finetune
from asfda.adapt.pseudo_labels import pseudo_label
from asfda.adapt.reliability import ReliabilityOptions, reliability_scores, select_reliable
from asfda.bench.context import BenchContext, CachingPredictor, group_means
from asfda.bench.spec import RunSpec
from asfda.demo.evaluate import by_severity, class_dice_per_subject
from asfda.query.asd import ForegroundRule
from asfda.query.dkd import KnowledgeSource
from asfda.query.embedding import EmbeddingKind
from asfda.query.selection import SelectionRule
from asfda.query.signals import CaseSignals, compute_signals
from asfda.query.strategies import RankingOptions, Strategy, rank


def ranking_options(spec: RunSpec, k: int, seed: int) -> RankingOptions:
    r = spec.ranking
    return RankingOptions(
        strategy=Strategy(spec.strategy),
        k=k,
        alpha=float(r["alpha"]),
        rule=SelectionRule(r["rule"]),
        embedding=EmbeddingKind(r["embedding"]),
        seed=seed,
        cold_start_medoid=bool(r["cold_start_medoid"]),
    )


def _signals(ctx: BenchContext, spec: RunSpec, network, round_index: int) -> List[CaseSignals]:
    """Round 0 scores with the source model (memoised per pool); later rounds re-score with the adapted model."""
    knowledge, rule = spec.ranking["knowledge_source"], spec.ranking["asd_rule"]
    if round_index == 0:
        signals = [s for s in ctx.source_signals(spec.seed, knowledge, rule)]
        epistemic = ctx.source_epistemic(spec.seed) if spec.strategy == Strategy.MC_DROPOUT.value else None
    else:
        pool = ctx.pool(spec.seed)
        predictor = CachingPredictor(network, ctx.config)
        signals = compute_signals(
            predictor,
            {i.case_id: i.image for i in pool.items},
            ctx.prior,
            KnowledgeSource(knowledge),
            ForegroundRule(rule),
        )
        epistemic = None
        if spec.strategy == Strategy.MC_DROPOUT.value:
            from asfda.query.asd import mc_dropout_epistemic

            epistemic = [
                mc_dropout_epistemic(predictor.mc_dropout_probs(i.image, ctx.settings.mc_samples, seed=n))
                for n, i in enumerate(pool.items)
            ]
    if epistemic is not None:  # copies, so the memoised source signals stay untouched
        signals = [CaseSignals(**{**s.__dict__, "epistemic": e}) for s, e in zip(signals, epistemic)]
    return signals


def _pseudo_items(ctx, spec, network, signals, labeled_ids, items_by_id, round_index) -> List[TrainingItem]:
    options = ReliabilityOptions(**spec.reliability)
    candidates = [s for s in signals if s.case_id not in labeled_ids]
    anchors = [s for s in signals if s.case_id in labeled_ids]
    predictor = ctx.pool(spec.seed).predictor if round_index == 0 else CachingPredictor(network, ctx.config)
    found = []
    for case in select_reliable(candidates, anchors, options):
        image = items_by_id[case.case_id].image
        label, mask = pseudo_label(predictor.forward(image).probs, options.voxel_confidence)
        found.append(TrainingItem(case.case_id, image, label[None].long(), mask[None]))
    return found


def _pseudo_accuracy(pseudo: List[TrainingItem], items_by_id) -> float:
    """Share of the pseudo-label voxels that were trained on and agree with the hidden truth."""
    right = total = 0
    for item in pseudo:
        truth = items_by_id[item.case_id].label
        right += int(((item.label == truth) & item.mask).sum())
        total += int(item.mask.sum())
    return right / total if total else float("nan")


def execute(ctx: BenchContext, spec: RunSpec) -> Dict:
    started = time.monotonic()
    pool = ctx.pool(spec.seed)
    items_by_id = {item.case_id: item for item in pool.items}
    network = ctx.fresh_network()
    labeled_ids: List[str] = []
    per_round = max(1, spec.k // spec.rounds)
    steps = max(1, ctx.settings.adapt_steps // spec.rounds)  # multi-round spends the same total steps
    n_pseudo, pseudo_acc = 0, float("nan")
    for round_index in range(spec.rounds):
        signals = _signals(ctx, spec, network, round_index)
        remaining = [s for s in signals if s.case_id not in labeled_ids]
        anchors = [s for s in signals if s.case_id in labeled_ids]
        options = ranking_options(spec, per_round, spec.seed * 100 + round_index)
        reliability = None
        if options.rule == SelectionRule.COMPLEMENTARY:
            reliability = reliability_scores(remaining, anchors, ReliabilityOptions(**spec.reliability))[0]
        ranked = rank(remaining, anchors, options, reliability)
        labeled_ids += [r.case_id for r in ranked if r.selected]
        labeled = [items_by_id[c] for c in labeled_ids]  # the simulated annotator reveals the true labels
        pseudo = (
            _pseudo_items(ctx, spec, network, signals, labeled_ids, items_by_id, round_index) if spec.pseudo else []
        )
        n_pseudo, pseudo_acc = len(pseudo), _pseudo_accuracy(pseudo, items_by_id)
        finetune(
            network,
            ctx.config.roi_size,
            labeled,
            pseudo,
            FinetuneOptions(steps=steps, seed=spec.seed * 100 + round_index, **spec.guards),
        )
    return evaluate(ctx, network, spec, labeled_ids, n_pseudo, pseudo_acc, time.monotonic() - started)


def evaluate(ctx: BenchContext, network, spec: RunSpec, picks, n_pseudo, pseudo_acc, seconds) -> Dict:
    pool = ctx.pool(spec.seed) if picks else None
    row = {**spec.to_dict(), "picks": list(picks), "n_pseudo": n_pseudo, "pseudo_voxel_accuracy": pseudo_acc}
    if pool is not None:
        counts: Dict[str, int] = {}
        for case in picks:
            counts[pool.cohort.anatomy[case]] = counts.get(pool.cohort.anatomy[case], 0) + 1
        row["picks_by_anatomy"] = counts
    for split, cohort in (("val", ctx.val), ("test", ctx.test)):
        per_class = class_dice_per_subject(network, ctx.config, cohort.subjects)
        dice = {case: float(np.mean(list(d.values()))) for case, d in per_class.items()}
        row[f"{split}_dice"] = float(np.mean(list(dice.values())))
        if ctx.config.out_channels > 2:  # a multi-class task: the Dice of each foreground class too
            row[f"{split}_by_class"] = {
                name: float(np.mean([d[name] for d in per_class.values()])) for name in next(iter(per_class.values()))
            }
        row[f"{split}_by_anatomy"] = group_means(dice, cohort.anatomy)
        row[f"{split}_by_severity"] = by_severity(dice, cohort.severity)
    row["seconds"] = seconds
    return row
