"""One forward pass per volume that yields probabilities, pooled features and norm-layer statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from asfda.model_config import ModelConfig
from asfda.networks import find_feature_module


def norm_layers_with_stats(network: nn.Module) -> List[nn.Module]:
    """Normalisation layers that stored source running statistics (batch norm, tracked instance norm)."""
    return [
        m
        for m in network.modules()
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm))
        and getattr(m, "track_running_stats", False)
        and m.running_mean is not None
    ]


@dataclass
class ForwardResult:
    probs: torch.Tensor  # (C, X, Y, Z) softmax probabilities in network space
    feature: np.ndarray  # pooled deepest-encoder feature z(x)
    layer_means: List[np.ndarray] = field(default_factory=list)  # per norm layer: channel means of its input
    layer_vars: List[np.ndarray] = field(default_factory=list)

    @property
    def multilayer_embedding(self) -> np.ndarray:
        """Channel means of every normalised layer: a description of the volume at all depths."""
        parts = self.layer_means or [self.feature]
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


class _Probe:
    """Forward hooks that accumulate statistics over all sliding-window patches of one volume."""

    def __init__(self, feature_module: nn.Module, norm_layers: List[nn.Module]):
        self.layers = norm_layers
        self.sums = [None] * len(self.layers)
        self.sumsq = [None] * len(self.layers)
        self.counts = [0] * len(self.layers)
        self.feature_sum: Optional[torch.Tensor] = None
        self.feature_count = 0
        self.handles = [feature_module.register_forward_hook(self._on_feature)]
        for index, layer in enumerate(self.layers):
            self.handles.append(layer.register_forward_pre_hook(self._make_norm_hook(index)))

    def _on_feature(self, _module, _inputs, output):
        pooled = output.detach().float().mean(dim=tuple(range(2, output.ndim)))  # (B, D)
        total = pooled.sum(dim=0).double().cpu()
        self.feature_sum = total if self.feature_sum is None else self.feature_sum + total
        self.feature_count += pooled.shape[0]

    def _make_norm_hook(self, index: int):
        def hook(_module, inputs):
            x = inputs[0].detach().double()
            dims = [0] + list(range(2, x.ndim))
            s, ss = x.sum(dim=dims).cpu(), (x * x).sum(dim=dims).cpu()
            n = x.numel() // x.shape[1]
            self.sums[index] = s if self.sums[index] is None else self.sums[index] + s
            self.sumsq[index] = ss if self.sumsq[index] is None else self.sumsq[index] + ss
            self.counts[index] += n

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def layer_stats(self):
        means, variances = [], []
        for s, ss, n in zip(self.sums, self.sumsq, self.counts):
            if n == 0:
                continue
            mean = (s / n).numpy()
            means.append(mean)
            variances.append(np.maximum((ss / n).numpy() - mean * mean, 1e-8))
        return means, variances


class Predictor:
    """Wraps a network for sliding-window inference and scoring on one device."""

    def __init__(self, network: nn.Module, config: ModelConfig, device: str = "cpu"):
        self.network = network.to(device).eval()
        self.config = config
        self.device = device
        self.feature_module = find_feature_module(self.network, config)
        # Looked up once: walking the module tree on every volume costs more than the hooks themselves.
        self._feature_module = dict(self.network.named_modules())[self.feature_module]
        self._norm_layers = norm_layers_with_stats(self.network)

    def _logits(self, image: torch.Tensor) -> torch.Tensor:
        batch = image.unsqueeze(0) if image.ndim == 4 else image
        return sliding_window_inference(
            batch.to(self.device).float(),
            roi_size=self.config.roi_size,
            sw_batch_size=self.config.sw_batch_size,
            predictor=self.network,
            overlap=self.config.sw_overlap,
            mode="gaussian",
        )[0]

    @torch.no_grad()
    def forward(self, image: torch.Tensor, collect: bool = True) -> ForwardResult:
        """Probabilities plus (when `collect`) pooled features and norm statistics from the same pass."""
        probe = _Probe(self._feature_module, self._norm_layers if collect else [])
        try:
            probs = torch.softmax(self._logits(image), dim=0).cpu()
        finally:
            probe.close()
        feature = (probe.feature_sum / max(probe.feature_count, 1)).numpy() if probe.feature_sum is not None else None
        means, variances = probe.layer_stats()
        return ForwardResult(probs=probs, feature=feature, layer_means=means, layer_vars=variances)

    @torch.no_grad()
    def mc_dropout_probs(self, image: torch.Tensor, samples: int, p: float = 0.2, seed: int = 0) -> torch.Tensor:
        """(S, C, X, Y, Z) probabilities from `samples` passes with dropout active.

        Networks without dropout layers get dropout on their deepest encoder output, the usual place
        for MC-dropout in encoder-decoder segmentation networks.
        """
        dropouts = [m for m in self.network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        handle = None
        if dropouts:
            for m in dropouts:
                m.train()
        else:
            handle = self._feature_module.register_forward_hook(lambda _m, _i, out: F.dropout(out, p=p, training=True))
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return torch.stack([torch.softmax(self._logits(image), dim=0).cpu() for _ in range(samples)])
        finally:
            torch.random.set_rng_state(generator_state)
            if handle is not None:
                handle.remove()
            for m in dropouts:
                m.eval()
