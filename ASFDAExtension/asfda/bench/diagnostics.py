"""Do the embeddings' clusters follow the anatomies, and do the signals track the source model's error?"""

from __future__ import annotations

from typing import Dict

import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from asfda.bench.context import BenchContext
from asfda.demo.evaluate import dice_per_subject
from asfda.query.embedding import EmbeddingKind, embed


def diagnostics(ctx: BenchContext) -> Dict:
    ari: Dict[str, list] = {kind.value: [] for kind in EmbeddingKind}
    corr: Dict[str, list] = {"dkd": [], "asd": [], "entropy": [], "epistemic": []}
    for replicate in range(ctx.settings.seeds):
        pool = ctx.pool(replicate)
        ctx.source_epistemic(replicate)
        signals = ctx.source_signals(replicate, "norm_stats", "otsu")
        truth = [pool.cohort.anatomy[s.case_id] for s in signals]
        n_groups = len(set(truth))
        for kind in EmbeddingKind:
            space = embed(signals, kind)
            if n_groups > 1 and len(signals) > n_groups:
                labels = KMeans(n_clusters=n_groups, n_init=10, random_state=0).fit_predict(space)
                ari[kind.value].append(float(adjusted_rand_score(truth, labels)))
        dice = dice_per_subject(ctx.network, ctx.config, pool.cohort.subjects)
        error = np.array([1.0 - dice[s.case_id] for s in signals])
        values = {
            "dkd": [s.dkd for s in signals],
            "asd": [s.asd for s in signals],
            "entropy": [s.entropy for s in signals],
        }
        if pool.epistemic is not None:
            values["epistemic"] = pool.epistemic
        for name, v in values.items():
            rho = spearmanr(v, error).statistic if np.std(error) > 0 and np.std(v) > 0 else float("nan")
            corr[name].append(float(rho))
    return {
        "cluster_vs_anatomy_ari": {k: _summary(v) for k, v in ari.items()},
        "spearman_with_source_error": {k: _summary(v) for k, v in corr.items()},
        "pools": ctx.settings.seeds,
    }


def _summary(values) -> Dict:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
