"""Sizes of one benchmark run; the full and the CI-sized presets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import List, Tuple

# How many runs there are, not how a run is made: changing these keeps every cached run valid.
RUN_COUNT_FIELDS = (
    "budgets",
    "seeds",
    "seeds_at_large_budget",
    "strategies",
    "ablations",
    "threads",
    "ablation_seeds",
    "headline_seeds",
    "headline_only",
    "slices_per_volume",
    "cost_pseudo",
    "cost_gate",
)


@dataclass
class BenchSettings:
    spacing: float = 6.0  # mm; 32x40x32 at 6 mm covers a head
    shape: Tuple[int, int, int] = (32, 40, 32)
    channels: Tuple[int, ...] = (8, 16, 32, 64)
    source_anatomies: Tuple[str, ...] = ("mni152", "colin27")  # the others are target-only: an unseen anatomy
    n_source_per_anatomy: int = 12
    n_pool_per_anatomy: int = 6  # per seed: every seed draws a fresh pool with its own deformation seeds
    n_val_per_anatomy: int = 4  # the validation split that picks the default (never the test split)
    n_test_per_anatomy: int = 6
    source_steps: int = 300
    adapt_steps: int = 60
    budgets: Tuple[int, ...] = (1, 2, 4, 8)
    seeds: int = 5
    seeds_at_large_budget: int = 3  # budgets >= 8 cost the most and vary the least
    headline_seeds: int = 10  # the arms of the headline comparisons get more seeds than the rest of the grid
    strategies: Tuple[str, ...] = (
        "random",
        "foreground_random",
        "entropy",
        "balanced_entropy",
        "coreset",
        "mc_dropout",
        "dkd",
        "asd",
        "asfda",
    )
    mc_samples: int = 10  # MONAI Label's EpistemicScoring default num_samples
    ablation_budget: int = 4
    ablation_seeds: int = 3  # 18 variants: the largest block of runs, so fewer seeds than the main grid
    ablations: bool = True
    multiround: Tuple[int, int] = (4, 2)  # rounds x labels per round, next to one-shot of the same total
    data_seed: int = 2026
    threads: int = 1
    anatomies: List[str] = field(default_factory=list)  # empty: every ready source
    # MNI152's brain mask: GM + WM closed with a ball of this radius (mm) -> whole-brain like the other sources
    mni152_closing_mm: float = 6.0
    headline_only: bool = False  # main phase: only the headline arms; no whole-pool reference, no multi-round
    task: str = "brain"  # "brain": background/brain on every source; "tissue": background/GM/WM on MNI152 only
    # How the target pool is composed. "uniform": shift severity uniform in [0, 1]. "hospital": one dominant
    # protocol (routine: mild shifts) and a rare one (strong T2-like shift, thick slices) in `rare_share` of the
    # pool; validation and test hold `rare_share_eval` rare volumes so the rare subgroup's Dice is measurable.
    pool_mix: str = "uniform"
    rare_share: float = 0.1
    rare_share_eval: float = 0.25
    # Every run goes through a real Datastore folder with asfda.loop.LoopSession (the worker's rank and
    # adapt code, validation gate included). The field exists so
    # that runs of the earlier in-benchmark loop (no such field) never share a fingerprint with these.
    engine: str = "datastore"
    # A hook for a source model other than the trained UNet (e.g. a SwinUNETR with reference statistics from
    # `asfda model import --reference`): a model version folder whose config and weights every run starts from.
    source_model_dir: str = ""
    # The source network the benchmark trains: "unet" (batch norm: DKD reads its running statistics) or
    # "swinunetr" (layer norm + group norm, no running statistics: DKD reads reference statistics recorded on
    # source volumes after training, as `asfda model import --reference` records them for a brought model).
    source_network: str = "unet"
    n_reference_volumes: int = 8  # source volumes whose statistics a "swinunetr" source model records
    # The validation gate's GateOptions.decide_from_labels. 0 (enforced at every label count) is what the runs
    # of 2026-11-27 used; the product's default since then, 11, makes k-fold verdicts from fewer labels advisory.
    gate_decide_from_labels: int = 0
    # The cost axis (`--cost-axis`, issue 22): sparse labels of these many slices per volume against whole volumes
    # at the same slice budgets; with and/or without pseudo-labels; the validation gate on or off (off: one
    # training per run instead of k + 1, the demo's choice).
    slices_per_volume: Tuple[int, ...] = (4, 8, 16)
    cost_pseudo: Tuple[bool, ...] = (True, False)
    cost_gate: bool = False

    def fingerprint(self) -> str:
        """Runs from other sizes must never be mixed into these results."""
        keys = {k: v for k, v in asdict(self).items() if k not in RUN_COUNT_FIELDS}
        if keys["task"] == "brain":  # the brain task predates the field: its fingerprints stay as they were
            del keys["task"]
        if keys["source_network"] == "unet":  # likewise: UNet runs keep the fingerprints they had
            del keys["source_network"], keys["n_reference_volumes"]
        if keys["gate_decide_from_labels"] == 0:
            del keys["gate_decide_from_labels"]
        return hashlib.sha1(json.dumps(keys, sort_keys=True, default=list).encode()).hexdigest()[:10]

    def seeds_for(self, budget: int) -> int:
        return self.seeds_at_large_budget if budget >= 8 else self.seeds


def tiny_settings() -> BenchSettings:
    """The CI configuration: one seed, tiny volumes, two strategies, a few steps."""
    return BenchSettings(
        spacing=12.0,
        shape=(16, 16, 16),
        channels=(4, 8, 16, 32),
        n_source_per_anatomy=2,
        n_pool_per_anatomy=3,
        n_val_per_anatomy=1,
        n_test_per_anatomy=1,
        source_steps=6,
        adapt_steps=3,
        budgets=(1, 2),
        seeds=1,
        seeds_at_large_budget=1,
        headline_seeds=1,
        strategies=("random", "asfda"),
        mc_samples=2,
        ablation_budget=2,
        ablation_seeds=1,
        ablations=False,
        multiround=(2, 1),
    )


COST_AXIS_STRATEGIES = ("asfda", "random", "foreground_random", "clasp_pe")


def cost_axis_settings() -> BenchSettings:
    """The cost axis's size: 64 slices along the sliced axis (the thickest, here the last of an isotropic grid),
    so that 4, 8 or 16 slices of a volume are a real part of it; whole volumes at k = 1, 2, 4."""
    return BenchSettings(
        spacing=2.5,
        shape=(56, 64, 64),
        source_steps=200,
        n_val_per_anatomy=1,  # the cost axis picks nothing on the validation split: one volume per anatomy
        n_test_per_anatomy=4,
        budgets=(1, 2, 4),
        strategies=COST_AXIS_STRATEGIES,
        ablations=False,
    )


def tiny_cost_settings() -> BenchSettings:
    """The cost axis at the CI size: 16 slices, whole 1 and 4 against 4 x 4 slices (a quarter of whole 4), two seeds
    (so paired tests exist), asfda and clasp_pe + PL."""
    settings = tiny_settings()
    settings.budgets, settings.seeds, settings.strategies = (1, 4), 2, ("asfda", "clasp_pe")
    settings.slices_per_volume, settings.cost_pseudo = (4,), (True,)
    settings.n_pool_per_anatomy = 8  # MNI152 alone in CI: a sparse arm of 4 slices takes 4 volumes
    return settings


TASKS = ("brain", "tissue")
# Sources in the brain task (all four registry T1s; the source model on two of them): the tissue task, on
# MNI152 alone, draws per anatomy as many subjects as the brain task draws in total.
_TARGET_SOURCES, _SOURCE_SOURCES = 4, 2


def for_task(settings: BenchSettings, task: str) -> BenchSettings:
    """The settings of `task`. 'tissue' (background / grey matter / white matter) exists for MNI152 only (the
    other sources ship no tissue maps), so its subgroups are the shift-severity bands, not anatomies."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    settings.task = task
    if task == "tissue":
        settings.anatomies = ["mni152"]
        settings.source_anatomies = ("mni152",)
        settings.n_source_per_anatomy *= _SOURCE_SOURCES
        settings.n_pool_per_anatomy *= _TARGET_SOURCES
        settings.n_val_per_anatomy *= _TARGET_SOURCES
        settings.n_test_per_anatomy *= _TARGET_SOURCES
    return settings


def subgroups(task: str, pool_mix: str = "uniform") -> Tuple[str, str]:
    """The per-subject Dice field whose groups the worst-subgroup target (c) looks at, and their name."""
    if pool_mix == "hospital":
        return ("test_by_protocol", "protocol")
    return ("test_by_severity", "severity band") if task == "tissue" else ("test_by_anatomy", "anatomy")
