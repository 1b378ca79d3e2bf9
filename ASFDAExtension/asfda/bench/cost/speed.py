"""`asfda bench speed`: what ranking costs next to plain inference, on one model and the same volumes."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from asfda.models.config import ModelConfig
from asfda.models.inference import Precision, Predictor, named_norm_layers_with_stats
from asfda.models.networks import build_network
from asfda.models.store import FeaturePrior, LoadedModel
from asfda.query.strategies import RankingOptions, Strategy, rank
from asfda.scoring import CaseScorer, ScoringOptions
from asfda.synth.anatomy import mni152
from asfda.synth.deform import random_subject
from asfda.synth.shifts import apply_shift, sample_shift

MONAI_LABEL_EPISTEMIC_SAMPLES = 10  # monailabel/tasks/scoring/epistemic.py: EpistemicScoring(num_samples=10)


# The sizes a hospital pool has: a CT at about 1.5 mm, the windows and batch of the Model Zoo's bundles.
REALISTIC_VOLUME = (256, 256, 224)
REALISTIC_ROI = (96, 96, 96)
REALISTIC_NETWORKS = {
    # 7.9 M parameters, batch norm, 2 classes; SwinUNETR as in swin_unetr_btcv_segmentation (62 M, 14 classes).
    "unet": {
        "network": "UNet",
        "network_args": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 0},
        "classes": 2,
    },
    "swinunetr": {"network": "SwinUNETR", "network_args": {"feature_size": 48}, "classes": 14},
}


@dataclass
class SpeedSettings:
    network: str = "unet"
    roi: Tuple[int, int, int] = (32, 40, 32)
    volume_sizes: Tuple[Tuple[int, int, int], ...] = ((32, 40, 32), (48, 56, 48), (64, 80, 64))
    pool_sizes: Tuple[int, ...] = (10, 20, 40)
    repeats: int = 3
    mc_samples: int = MONAI_LABEL_EPISTEMIC_SAMPLES
    device: str = "cpu"
    threads: int = 1
    child_memory: bool = True  # peak memory per mode from a fresh process each (see peak_child)
    preset: str = "small"
    sw_batch_size: int = 1
    precision: str = Precision.FP32.value
    compare_precision: bool = False  # also time Infer and ASFDA scoring under bf16 autocast, interleaved

    @classmethod
    def from_args(cls, args) -> SpeedSettings:
        s = cls(network=args.network, repeats=args.repeats, device=args.device, threads=args.threads)
        s.precision = getattr(args, "precision", None) or Precision.FP32.value
        s.compare_precision = bool(getattr(args, "compare_precision", False))
        s.mc_samples = getattr(args, "mc_samples", None) or s.mc_samples
        s.child_memory = not getattr(args, "no_child_memory", False)
        if getattr(args, "preset", None) == "realistic":
            s.preset, s.roi, s.volume_sizes, s.sw_batch_size = "realistic", REALISTIC_ROI, (REALISTIC_VOLUME,), 4
            s.pool_sizes = (10, 20)
            return s
        if args.network == "swinunetr":
            # Its patch embedding needs multiples of 32; one 64^3 window keeps 10 CPU dropout passes in minutes.
            s.roi, s.volume_sizes = (64, 64, 64), ((64, 64, 64),)
        if args.tiny:
            s.roi, s.volume_sizes, s.pool_sizes, s.repeats = (16, 16, 16), ((16, 16, 16), (24, 24, 24)), (4, 6), 1
            if args.network == "swinunetr":
                s.roi, s.volume_sizes = (32, 32, 32), ((32, 32, 32),)
            s.mc_samples = 2
            s.child_memory = False
        return s


def _config(settings: SpeedSettings) -> ModelConfig:
    if settings.preset == "realistic":
        spec = REALISTIC_NETWORKS[settings.network]
        labels = {"background": 0, **{f"class{i}": i for i in range(1, spec["classes"])}}
        return ModelConfig(
            network=spec["network"],
            network_args=dict(spec["network_args"]),
            labels=labels,
            roi_size=list(settings.roi),
            sw_batch_size=settings.sw_batch_size,
        )
    if settings.network == "swinunetr":
        return ModelConfig(network="SwinUNETR", labels={"background": 0, "brain": 1}, roi_size=list(settings.roi))
    return ModelConfig(network="UNet", labels={"background": 0, "brain": 1}, roi_size=list(settings.roi))


def _volumes(shape, count: int, seed: int, preset: str = "small") -> List[torch.Tensor]:
    """Shifted target-like volumes of real MNI152 anatomy at the spacing that gives `shape`; the realistic
    preset uses CT-sized synthetic bodies instead (resampling the template to 0.75 mm costs more than it tells)."""
    if preset == "realistic":
        from asfda.bench.cost.pool import body_volume

        rng = np.random.default_rng(seed)
        volumes = [body_volume(tuple(shape), rng) for _ in range(count)]
        return [torch.as_tensor((v - v.mean()) / (v.std() + 1e-6))[None] for v in volumes]
    anatomy = mni152(spacing=4.0 * 48 / shape[0], shape=tuple(shape))
    rng = np.random.default_rng(seed)
    found = []
    for i in range(count):
        image, _ = random_subject(anatomy.image, anatomy.label, seed + i)
        image = apply_shift(image, sample_shift(float(rng.uniform()), rng), seed + i)
        found.append(torch.as_tensor((image - image.mean()) / (image.std() + 1e-6))[None])
    return found


def product_scorer(settings: SpeedSettings) -> CaseScorer:
    """The scorer a rank builds, on an untrained network: the cost of a pass does not depend on the weights."""
    torch.manual_seed(0)
    config = _config(settings)
    network = build_network(config)
    model = LoadedModel("bench", config, network, None)
    if not named_norm_layers_with_stats(network):
        # No running statistics: score against a feature prior, as a model imported with one would.
        probe = Predictor(network, config, settings.device).forward(_volumes(settings.roi, 1, 99, settings.preset)[0])
        model.feature_prior = FeaturePrior(mean=np.zeros_like(probe.feature), var=np.ones_like(probe.feature))
    return CaseScorer(model, settings.device, ScoringOptions(precision=Precision(settings.precision)))


def product_modes(scorer: CaseScorer, mc_samples: int) -> Dict:
    """The three code paths the product runs per volume: Infer (argmax label map), Rank (ASFDA signals),
    and MC-dropout scoring (MONAI Label's epistemic default)."""
    predictor = scorer.predictor
    return {
        "inference": lambda v: predictor.label_map(v),
        "asfda_scoring": lambda v: scorer.score("v", v),
        "mc_dropout_scoring": lambda v: predictor.mc_dropout_epistemic(v, mc_samples),
    }


def child_peak(settings: SpeedSettings, volume: torch.Tensor, mode: str) -> Dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.npy"
        np.save(path, volume.numpy())
        spec = {
            "network": settings.network,
            "roi": list(settings.roi),
            "device": settings.device,
            "volume_path": str(path),
            "mode": mode,
            "samples": settings.mc_samples,
            "preset": settings.preset,
            "sw_batch_size": settings.sw_batch_size,
            "precision": settings.precision,
        }
        run = subprocess.run(
            [sys.executable, "-m", "asfda.bench.cost.peak_child", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def _time_modes(modes: Dict, volumes: List[torch.Tensor]) -> Dict[str, List[float]]:
    """Seconds per volume for every mode, interleaved volume by volume, so that load from other
    processes on a shared machine falls on all modes alike rather than on whichever ran last."""
    for fn in modes.values():
        fn(volumes[0])  # warm-up: first-call allocations and kernel selection
    times: Dict[str, List[float]] = {name: [] for name in modes}
    for volume in volumes:
        for name, fn in modes.items():
            started = time.perf_counter()
            fn(volume)
            times[name].append(time.perf_counter() - started)
    return times


def run_speed(settings: SpeedSettings, out: Path) -> Dict:
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    scorer = product_scorer(settings)
    report: Dict = {
        "settings": asdict(settings),
        "torch_threads": torch.get_num_threads(),
        "device": settings.device,
        "per_volume": [],
        "ranking": [],
    }
    modes = product_modes(scorer, settings.mc_samples)
    if settings.compare_precision:
        half = product_scorer(replace(settings, precision=Precision.BF16.value))
        modes["inference_bf16"] = lambda v: half.predictor.label_map(v)
        modes["asfda_scoring_bf16"] = lambda v: half.score("v", v)
    for shape in settings.volume_sizes:
        volumes = _volumes(shape, settings.repeats, 1, settings.preset)
        row = {"shape": list(shape)}
        times = _time_modes(modes, volumes)
        for name in modes:
            row[name] = {"seconds": statistics.median(times[name]), "all_seconds": times[name]}
            if settings.child_memory and not name.endswith("_bf16"):
                row[name]["memory"] = child_peak(settings, volumes[0], name)
        # Ratios per volume (modes timed back to back on it), then the median: robust to load drifts.
        for name, key in (("asfda_scoring", "ratio_asfda"), ("mc_dropout_scoring", "ratio_mc_dropout")):
            row[key] = statistics.median(t / b for t, b in zip(times[name], times["inference"]))
        for name in ("inference", "asfda_scoring"):
            if f"{name}_bf16" in times:  # bf16 time over fp32 time on the same volume
                row[f"ratio_{name}_bf16"] = statistics.median(h / f for h, f in zip(times[f"{name}_bf16"], times[name]))
        report["per_volume"].append(row)
    pool = _volumes(settings.roi, max(settings.pool_sizes), 7, settings.preset)
    signals = [scorer.score(f"p{i}", v) for i, v in enumerate(pool)]
    for n in settings.pool_sizes:
        row = {"pool": n}
        for strategy in (Strategy.ASFDA, Strategy.CORESET, Strategy.RANDOM):
            spent = []
            for _ in range(5):
                started = time.perf_counter()
                rank(signals[:n], [], RankingOptions(strategy=strategy, k=4))
                spent.append(time.perf_counter() - started)
            row[f"rank_{strategy.value}_s"] = statistics.median(spent)
        row["score_pool_s_est"] = n * report["per_volume"][0]["asfda_scoring"]["seconds"]
        report["ranking"].append(row)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"speed-{settings.network}.json").write_text(json.dumps(report, indent=2))
    (out / f"speed-{settings.network}.md").write_text(format_speed(report) + "\n")
    return report


def _memory(entry: Dict) -> str:
    if "memory" not in entry:
        return "-"
    text = f"{entry['memory']['rise_mb']:.0f}"
    return text + (f" (CUDA {entry['memory']['cuda_peak_mb']:.0f})" if "cuda_peak_mb" in entry["memory"] else "")


def format_speed(report: Dict) -> str:
    s = report["settings"]
    modes = ("inference", "asfda_scoring", "mc_dropout_scoring")
    lines = [
        f"# Scoring cost: {s['network']} on {report['device']} ({report['torch_threads']} thread(s)), "
        f"roi {tuple(s['roi'])}, median of {s['repeats']} volumes, MC-dropout {s['mc_samples']} samples",
        "",
        "| volume | inference s | ASFDA scoring s (x) | MC-dropout s (x) | peak memory rise MB inf / ASFDA / MC |",
        "|---|---|---|---|---|",
    ]
    for r in report["per_volume"]:
        mem = " / ".join(_memory(r[m]) for m in modes)
        lines.append(
            f"| {'x'.join(map(str, r['shape']))} | {r['inference']['seconds']:.3f} | "
            f"{r['asfda_scoring']['seconds']:.3f} ({r['ratio_asfda']:.2f}x) | "
            f"{r['mc_dropout_scoring']['seconds']:.3f} ({r['ratio_mc_dropout']:.2f}x) | {mem} |"
        )
    lines += [
        "",
        "(x) = median over volumes of the mode's time over plain inference on the same volume, timed back to "
        "back. Memory: peak rise of the resident set (sampled every 2 ms) of a fresh process running the mode "
        "once, over its level after loading model and volume; CUDA: torch.cuda.max_memory_allocated.",
        "",
        "| pool size | rank asfda s | rank coreset s | rank random s | scoring the pool s (est.) |",
        "|---|---|---|---|---|",
    ]
    for r in report["ranking"]:
        lines.append(
            f"| {r['pool']} | {r['rank_asfda_s']:.4f} | {r['rank_coreset_s']:.4f} | "
            f"{r['rank_random_s']:.5f} | {r['score_pool_s_est']:.2f} |"
        )
    for r in report["per_volume"]:
        if "ratio_inference_bf16" in r:
            lines += [
                "",
                f"bf16 autocast on {'x'.join(map(str, r['shape']))}: inference {r['inference_bf16']['seconds']:.3f} s "
                f"({r['ratio_inference_bf16']:.2f}x fp32), ASFDA scoring {r['asfda_scoring_bf16']['seconds']:.3f} s "
                f"({r['ratio_asfda_scoring_bf16']:.2f}x fp32)",
            ]
    return "\n".join(lines)
