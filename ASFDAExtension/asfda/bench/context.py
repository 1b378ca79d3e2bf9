"""Everything the runs share: anatomies, cohorts, the cached source model and per-pool forward passes."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from asfda.adapt.finetune import TrainingItem
from asfda.bench.anatomies import TASK_LABELS, load_anatomies
from asfda.bench.dataset import Cohort, pool_cohort, source_cohort, target_cohort
from asfda.bench.settings import BenchSettings
from asfda.demo.source_model import as_item, demo_model_config, train_source_model
from asfda.inference import ForwardResult, Predictor
from asfda.model_config import ModelConfig
from asfda.model_store import FeaturePrior
from asfda.query.asd import ForegroundRule
from asfda.query.dkd import KnowledgeSource
from asfda.query.signals import CaseSignals, compute_signals
from asfda.synth.anatomy import Anatomy


class CachingPredictor(Predictor):
    """A predictor that remembers each image's forward pass: every signal variant reuses one pass."""

    def __init__(self, network, config, device: str = "cpu"):
        super().__init__(network, config, device)
        self.memo: Dict[int, ForwardResult] = {}

    def forward(self, image: torch.Tensor, collect: bool = True) -> ForwardResult:
        key = id(image)
        if key not in self.memo:
            self.memo[key] = super().forward(image, collect=True)
        return self.memo[key]


@dataclass
class Pool:
    cohort: Cohort
    items: List[TrainingItem]  # prepared images with their true labels (revealed only when picked)
    predictor: Optional[CachingPredictor] = None  # the source model's passes over this pool
    signals: Dict[Tuple[str, str], List[CaseSignals]] = field(default_factory=dict)
    epistemic: Optional[List[float]] = None


class BenchContext:
    def __init__(self, settings: BenchSettings, data_cache: Path, results: Path, log=print):
        self.settings = settings
        torch.set_num_threads(settings.threads)
        self.anatomies: List[Anatomy] = load_anatomies(
            data_cache, settings.spacing, settings.shape, settings.anatomies, settings.mni152_closing_mm, settings.task
        )
        self.config: ModelConfig = demo_model_config(TASK_LABELS[settings.task], settings.shape)
        self.config.network_args["channels"] = list(settings.channels)
        seed = settings.data_seed
        hospital = settings.pool_mix == "hospital"
        self.rare_share = settings.rare_share if hospital else None
        rare_eval = settings.rare_share_eval if hospital else None
        self.val = target_cohort(self.anatomies, settings.n_val_per_anatomy, "val", seed, rare_eval)
        self.test = target_cohort(self.anatomies, settings.n_test_per_anatomy, "test", seed, rare_eval)
        if settings.source_model_dir:  # the hook for a brought model (e.g. SwinUNETR with reference statistics)
            self.network, self.prior = self._brought_model(Path(settings.source_model_dir))
        else:
            self.network, self.prior = self._source_model(Path(results), log)
        self.pools: Dict[int, Pool] = {}
        self.scratch = Path(results) / "scratch"  # per-run datastores, deleted after each run
        self.affine = {a.name: a.affine for a in self.anatomies}

    def _brought_model(self, folder: Path):
        """A model version folder (config.json + weights.pt [+ feature_prior.npz]) as the source model. Its
        label set must match the task's; its DKD knowledge source is whatever the version carries."""
        from asfda.model_store import ModelStore

        loaded = ModelStore(folder.parent).load(folder.name)
        if loaded.config.labels != self.config.labels:
            raise ValueError(f"{folder}: labels {loaded.config.labels} are not the task's {self.config.labels}")
        self.config = loaded.config
        return loaded.network.eval(), loaded.feature_prior

    def _source_model(self, results: Path, log):
        """Train once per settings fingerprint; later runs and resumed runs load the same weights."""
        path = results / "cache" / f"source-model-{self.settings.fingerprint()}.pt"
        from asfda.networks import build_network

        if path.exists():
            stored = torch.load(path, weights_only=False)
            network = build_network(self.config)
            network.load_state_dict(stored["state"])
            return network.eval(), FeaturePrior(mean=stored["prior_mean"], var=stored["prior_var"])
        cohort = source_cohort(
            self.anatomies, self.settings.source_anatomies, self.settings.n_source_per_anatomy, self.settings.data_seed
        )
        log(
            f"training the source model on {len(cohort.subjects)} T1-like subjects of "
            f"{', '.join(sorted(set(cohort.anatomy.values())))} ..."
        )
        from asfda.progress import console_progress

        network, prior = train_source_model(
            cohort.subjects,
            self.config,
            self.settings.source_steps,
            self.settings.data_seed,
            progress=console_progress("source model"),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": network.state_dict(), "prior_mean": prior.mean, "prior_var": prior.var}, path)
        return network.eval(), prior

    def fresh_network(self) -> torch.nn.Module:
        return copy.deepcopy(self.network)

    def pool(self, replicate: int) -> Pool:
        if replicate not in self.pools:
            cohort = pool_cohort(
                self.anatomies, self.settings.n_pool_per_anatomy, self.settings.data_seed, replicate, self.rare_share
            )
            items = [as_item(s, self.config) for s in cohort.subjects]
            self.pools[replicate] = Pool(cohort, items, CachingPredictor(self.network, self.config))
        return self.pools[replicate]

    def source_signals(self, replicate: int, knowledge: str, asd_rule: str) -> List[CaseSignals]:
        pool = self.pool(replicate)
        key = (knowledge, asd_rule)
        if key not in pool.signals:
            pool.signals[key] = compute_signals(
                pool.predictor,
                {item.case_id: item.image for item in pool.items},
                self.prior,
                KnowledgeSource(knowledge),
                ForegroundRule(asd_rule),
            )
        return pool.signals[key]

    def source_epistemic(self, replicate: int) -> List[float]:
        from asfda.query.asd import mc_dropout_epistemic

        pool = self.pool(replicate)
        if pool.epistemic is None:
            predictor = Predictor(self.network, self.config)
            pool.epistemic = [
                mc_dropout_epistemic(predictor.mc_dropout_probs(item.image, self.settings.mc_samples, seed=i))
                for i, item in enumerate(pool.items)
            ]
        return pool.epistemic


def group_means(dice: Dict[str, float], group_of: Dict[str, str]) -> Dict[str, float]:
    groups: Dict[str, List[float]] = {}
    for case, value in dice.items():
        groups.setdefault(group_of[case], []).append(value)
    return {g: float(np.mean(v)) for g, v in sorted(groups.items())}
