"""One forward pass per volume that yields probabilities, pooled features and norm-layer statistics.

Everything that scoring needs is computed on the network's device: the hooks keep running sums there
and the caller transfers one small result per volume, never a per-layer or per-window tensor.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from asfda.models.config import ModelConfig
from asfda.models.networks import find_feature_module
from asfda.models.voxel_maps import predicted_class, pseudo_label, voxel_entropy

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


class Precision(str, enum.Enum):
    AUTO = "auto"  # bf16 on a CUDA device that supports it, fp32 elsewhere (measured: docs/benchmarks.md)
    FP32 = "fp32"
    BF16 = "bf16"  # autocast; what it gains depends on the network and device (docs/benchmarks.md)
    FP16 = "fp16"


def resolve_precision(precision: Precision, device: str) -> Precision:
    """AUTO by measurement: on an H100, bf16 autocast took 0.91x (BN UNet) and 0.83x (SwinUNETR-48) of fp32
    scoring time; on the CPU it was several times slower."""
    precision = Precision(precision)
    if precision != Precision.AUTO:
        return precision
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return Precision.BF16 if cuda else Precision.FP32


def autocast(device: str, precision: Precision):
    precision = resolve_precision(precision, device)
    if precision == Precision.FP32:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == Precision.BF16 else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def norm_layers(network: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Every normalisation layer whose input has one channel axis (batch, instance, group, layer norm)."""
    return [
        (name, m)
        for name, m in network.named_modules()
        if isinstance(m, NORM_TYPES) and not (isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1)
    ]


def named_norm_layers_with_stats(network: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Normalisation layers that stored source running statistics (batch norm, tracked instance norm)."""
    return [
        (name, m)
        for name, m in norm_layers(network)
        if getattr(m, "track_running_stats", False) and getattr(m, "running_mean", None) is not None
    ]


@dataclass
class ForwardResult:
    probs: torch.Tensor  # (C, X, Y, Z) softmax probabilities in network space (on the CPU unless asked otherwise)
    feature: np.ndarray  # pooled deepest-encoder feature z(x)
    layer_means: List[np.ndarray] = field(default_factory=list)  # per norm layer: channel means of its input
    layer_vars: List[np.ndarray] = field(default_factory=list)
    layer_names: List[str] = field(default_factory=list)  # module names, aligned with layer_means/layer_vars


class _Probe:
    """Forward hooks that pool statistics over all sliding-window patches of one volume, on the device.

    A hook call costs one kernel: the channel mean and variance of its input (var_mean), kept as they are.
    Python-side work per call is what limits a fast network on a GPU (hundreds of hook calls per volume),
    so the per-call moments are merged only once, at the end, with the exact parallel formula (Chan et
    al.) in float64: no sum of squares that would cancel for large voxel counts.
    """

    def __init__(self, feature_module: nn.Module, layers: List[Tuple[str, nn.Module]]):
        self.names = [name for name, _ in layers]
        self.moments: List[List[Tuple[torch.Tensor, torch.Tensor, int]]] = [[] for _ in layers]
        self.features: List[torch.Tensor] = []
        self.handles = [feature_module.register_forward_hook(self._on_feature)]
        for index, (_, layer) in enumerate(layers):
            channel_axis = -1 if isinstance(layer, nn.LayerNorm) else 1  # Swin's layer norms see channels last
            self.handles.append(layer.register_forward_pre_hook(self._make_norm_hook(index, channel_axis)))

    def _on_feature(self, _module, _inputs, output):
        self.features.append(output.detach().float().mean(dim=tuple(range(2, output.ndim))))  # (B, D)

    def _make_norm_hook(self, index: int, channel_axis: int):
        def hook(_module, inputs):
            x = inputs[0].detach()
            if x.dtype != torch.float32:
                x = x.float()
            axis = channel_axis % x.ndim
            var, mean = torch.var_mean(x, dim=[d for d in range(x.ndim) if d != axis], unbiased=False)
            self.moments[index].append((mean, var, x.numel() // x.shape[axis]))

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    @staticmethod
    def _merge(moments: List[Tuple[torch.Tensor, torch.Tensor, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        means = torch.stack([m for m, _, _ in moments]).double()  # (calls, C)
        variances = torch.stack([v for _, v, _ in moments]).double()
        counts = torch.tensor([n for _, _, n in moments], dtype=torch.float64, device=means.device)[:, None]
        weights = counts / counts.sum()
        mean = (weights * means).sum(dim=0)
        return mean, (weights * (variances + (means - mean) ** 2)).sum(dim=0)

    def to_host(self) -> Tuple[Optional[np.ndarray], List[str], List[np.ndarray], List[np.ndarray]]:
        """(feature, layer names, means, variances) with a single device-to-host transfer."""
        seen = [i for i, calls in enumerate(self.moments) if calls]
        merged = [self._merge(self.moments[i]) for i in seen]
        parts = [m for m, _ in merged] + [v for _, v in merged]
        if self.features:
            parts.append(torch.cat(self.features).double().mean(dim=0))
        if not parts:
            return None, [], [], []
        flat = torch.cat([p.reshape(-1) for p in parts]).cpu().numpy()
        pieces = np.split(flat, np.cumsum([p.numel() for p in parts])[:-1])
        feature = pieces.pop() if self.features else None
        means, variances = pieces[: len(seen)], [np.maximum(v, 1e-8) for v in pieces[len(seen) :]]
        return feature, [self.names[i] for i in seen], means, variances


class Predictor:
    """Wraps a network for sliding-window inference and scoring on one device."""

    def __init__(
        self, network: nn.Module, config: ModelConfig, device: str = "cpu", precision: Precision = Precision.FP32
    ):
        self.network = network.to(device).eval()
        self.config = config
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.feature_module = find_feature_module(self.network, config)
        # Looked up once: walking the module tree on every volume costs more than the hooks themselves.
        self._feature_module = dict(self.network.named_modules())[self.feature_module]
        self._norm_layers = norm_layers(self.network)
        self._window = None
        if config.nnunet is not None:  # nnU-Net's own sliding window (asfda.models.nnunet_pipeline)
            from asfda.models.nnunet_pipeline import WindowPredictor

            self._window = WindowPredictor(config, device)

    def _raw_logits(self, image: torch.Tensor) -> torch.Tensor:
        if self._window is not None:
            # nnU-Net decides its own precision (autocast on a GPU, fp32 on the CPU, logits kept in float16).
            return self._window.logits(self.network, image[0] if image.ndim == 5 else image)
        batch = image.unsqueeze(0) if image.ndim == 4 else image
        with autocast(self.device, self.precision):
            logits = sliding_window_inference(
                torch.as_tensor(batch).to(self.device).float(),
                roi_size=self.config.roi_size,
                sw_batch_size=self.config.sw_batch_size,
                predictor=self.network,
                overlap=self.config.sw_overlap,
                mode=self.config.sw_mode,
                padding_mode=self.config.sw_padding_mode,
            )[0]
        return torch.as_tensor(logits)

    def _logits(self, image: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self._raw_logits(image)).float()

    @torch.no_grad()
    def logit_map(self, image: torch.Tensor) -> torch.Tensor:
        """(C, X, Y, Z) network-space logits in the type the model's own pipeline keeps them (nnU-Net: float16),
        on the CPU; what `preprocess.logits_to_labels` takes."""
        return torch.as_tensor(self._raw_logits(image)).cpu()

    @torch.no_grad()
    def device_pass(self, image: torch.Tensor, collect: bool = True) -> ForwardResult:
        """Like `forward`, but the probabilities stay on the network's device."""
        probe = _Probe(self._feature_module, self._norm_layers if collect else [])
        try:
            probs = torch.softmax(self._logits(image), dim=0)
        finally:
            probe.close()
        feature, names, means, variances = probe.to_host()
        return ForwardResult(probs=probs, feature=feature, layer_means=means, layer_vars=variances, layer_names=names)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, collect: bool = True) -> ForwardResult:
        """Probabilities on the CPU plus (when `collect`) pooled features and norm statistics of the same pass."""
        result = self.device_pass(image, collect)
        result.probs = result.probs.cpu()
        return result

    @torch.no_grad()
    def probability_map(self, image: torch.Tensor) -> torch.Tensor:
        """(C, X, Y, Z) float32 softmax probabilities in network space, on the CPU (no features collected)."""
        return torch.softmax(self._logits(image), dim=0).cpu()

    @torch.no_grad()
    def label_map(self, image: torch.Tensor) -> torch.Tensor:
        """(X, Y, Z) uint8 class ids in network space; the argmax runs on the device, only ids come back."""
        return predicted_class(self._logits(image)).to(torch.uint8).cpu()

    @torch.no_grad()
    def confident_label_map(self, image: torch.Tensor, voxel_confidence: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """(uint8 class ids, bool mask of voxels whose top probability reaches `voxel_confidence`), network space."""
        label, mask = pseudo_label(torch.softmax(self._logits(image), dim=0), voxel_confidence)
        return label.cpu(), mask.cpu()

    @contextlib.contextmanager
    def _dropout_active(self, p: float, seed: int) -> Iterator[None]:
        """Dropout on at inference time. Networks without dropout layers get dropout on their deepest encoder
        output, the usual place for MC-dropout in encoder-decoder segmentation networks."""
        dropouts = [m for m in self.network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        handle = None
        if dropouts:
            for m in dropouts:
                m.train()
        else:
            handle = self._feature_module.register_forward_hook(lambda _m, _i, out: F.dropout(out, p=p, training=True))
        generator_state = torch.random.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.random.set_rng_state(generator_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
            if handle is not None:
                handle.remove()
            for m in dropouts:
                m.eval()

    @torch.no_grad()
    def mc_dropout_epistemic(self, image: torch.Tensor, samples: int, p: float = 0.2, seed: int = 0) -> float:
        """BALD mutual information averaged over voxels, accumulated pass by pass on the device: memory stays
        at two probability maps whatever the number of samples."""
        mean_probs: Optional[torch.Tensor] = None
        mean_entropy: Optional[torch.Tensor] = None
        with self._dropout_active(p, seed):
            for _ in range(samples):
                probs = torch.softmax(self._logits(image), dim=0)
                entropy = voxel_entropy(probs)
                mean_probs = probs / samples if mean_probs is None else mean_probs + probs / samples
                mean_entropy = entropy / samples if mean_entropy is None else mean_entropy + entropy / samples
        return float((voxel_entropy(mean_probs) - mean_entropy).clamp_min(0).mean())
