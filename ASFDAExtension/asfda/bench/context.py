"""Everything the runs share: anatomies, cohorts, the cached source model and per-pool forward passes."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from filelock import FileLock

from asfda.adapt import TrainingItem
from asfda.bench.anatomies import TASK_LABELS, load_anatomies
from asfda.bench.dataset import Cohort, pool_cohort, source_cohort, target_cohort
from asfda.bench.settings import BenchSettings
from asfda.core.progress import console_progress
from asfda.demo.source_model import as_item, demo_model_config, train_source_model
from asfda.models.config import ModelConfig
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.models.reference_stats import reference_stats_of
from asfda.models.store import FeaturePrior, ModelStore, ReferenceStats
from asfda.query.asd import ForegroundRule
from asfda.query.dkd import KnowledgeSource
from asfda.query.signals import CaseSignals, compute_signals
from asfda.synth.anatomy import Anatomy


def swin_source_config(config: ModelConfig, shape) -> ModelConfig:
    """A small SwinUNETR for the benchmark's volumes. Its window is the largest multiple of 32 that fits
    (five halvings); at 32^3 the bottleneck is one voxel, where instance norm cannot train, so the
    convolutional blocks use group norm: still no running statistics, as in the Model Zoo's SwinUNETR."""
    config = copy.deepcopy(config)
    config.network = "SwinUNETR"
    config.network_args = {"feature_size": 12, "window_size": 4, "norm_name": ["group", {"num_groups": 4}]}
    config.roi_size = [max(32, (s // 32) * 32) for s in shape]
    return config.validate()


@dataclass
class Pool:
    cohort: Cohort
    items: List[TrainingItem]  # prepared images with their true labels (revealed only when picked)
    predictor: Optional[Predictor] = None  # the source model over this pool (scoring runs its device pass)
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
        if settings.source_network == "swinunetr":
            self.config = swin_source_config(self.config, settings.shape)
        self.reference: Optional[ReferenceStats] = None  # set for a source network without running statistics
        seed = settings.data_seed
        hospital = settings.pool_mix == "hospital"
        self.rare_share = settings.rare_share if hospital else None
        rare_eval = settings.rare_share_eval if hospital else None
        self.val = target_cohort(self.anatomies, settings.n_val_per_anatomy, "val", seed, rare_eval)
        self.test = target_cohort(self.anatomies, settings.n_test_per_anatomy, "test", seed, rare_eval)
        if settings.source_model_dir:  # a brought model version (its reference statistics come with it)
            self.network, self.prior = self._brought_model(Path(settings.source_model_dir))
        else:
            self.network, self.prior = self._source_model(Path(results), log)
        self.pools: Dict[int, Pool] = {}
        self.scratch = Path(results) / "scratch"  # per-run datastores, deleted after each run
        self.affine = {a.name: a.affine for a in self.anatomies}

    def _brought_model(self, folder: Path):
        """A model version folder (config.json + weights.pt [+ feature_prior.npz]) as the source model. Its
        label set must match the task's; its DKD knowledge source is whatever the version carries."""
        loaded = ModelStore(folder.parent).load(folder.name)
        if loaded.config.labels != self.config.labels:
            raise ValueError(f"{folder}: labels {loaded.config.labels} are not the task's {self.config.labels}")
        self.config, self.reference = loaded.config, loaded.reference_stats
        return loaded.network.eval(), loaded.feature_prior

    def _source_model(self, results: Path, log):
        """Train once per settings fingerprint; later runs, resumed runs and other shards load the same weights
        (the lock makes a second shard wait for the first one's training instead of training its own)."""
        path = results / "cache" / f"source-model-{self.settings.fingerprint()}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                self._train_source_model(path, log)
        stored = torch.load(path, weights_only=False)
        network = build_network(self.config)
        network.load_state_dict(stored["state"])
        if stored.get("reference"):
            self.reference = ReferenceStats(**stored["reference"])
        return network.eval(), FeaturePrior(mean=stored["prior_mean"], var=stored["prior_var"])

    def _train_source_model(self, path: Path, log) -> None:
        cohort = source_cohort(
            self.anatomies, self.settings.source_anatomies, self.settings.n_source_per_anatomy, self.settings.data_seed
        )
        log(
            f"training the source model on {len(cohort.subjects)} T1-like subjects of "
            f"{', '.join(sorted(set(cohort.anatomy.values())))} ..."
        )
        network, prior = train_source_model(
            cohort.subjects,
            self.config,
            self.settings.source_steps,
            self.settings.data_seed,
            progress=console_progress("source model"),
        )
        reference = None
        if self.settings.source_network != "unet":
            # What `asfda model import --reference` records: the normalisation layers' inputs on a few
            # source volumes, here the first subjects the source model was trained on.
            subjects = cohort.subjects[: self.settings.n_reference_volumes]
            images = ((s.case_id, as_item(s, self.config).image) for s in subjects)
            reference = asdict(reference_stats_of(Predictor(network.eval(), self.config), images))
        partial = path.with_suffix(".partial")
        stored = {"state": network.state_dict(), "prior_mean": prior.mean, "prior_var": prior.var}
        torch.save({**stored, "reference": reference}, partial)
        partial.replace(path)  # a kill mid-save leaves no half-written model for the next run to load

    def pool(self, replicate: int) -> Pool:
        if replicate not in self.pools:
            cohort = pool_cohort(
                self.anatomies, self.settings.n_pool_per_anatomy, self.settings.data_seed, replicate, self.rare_share
            )
            items = [as_item(s, self.config) for s in cohort.subjects]
            self.pools[replicate] = Pool(cohort, items, Predictor(self.network, self.config))
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
        pool = self.pool(replicate)
        if pool.epistemic is None:  # the product's streaming BALD (asfda.scoring), one seed per case
            pool.epistemic = [
                pool.predictor.mc_dropout_epistemic(item.image, self.settings.mc_samples, seed=i)
                for i, item in enumerate(pool.items)
            ]
        return pool.epistemic


def group_means(dice: Dict[str, float], group_of: Dict[str, str]) -> Dict[str, float]:
    groups: Dict[str, List[float]] = {}
    for case, value in dice.items():
        groups.setdefault(group_of[case], []).append(value)
    return {g: float(np.mean(v)) for g, v in sorted(groups.items())}
