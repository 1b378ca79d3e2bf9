"""Build MONAI networks from a ModelConfig and find the module that gives the pooled feature z(x)."""

from __future__ import annotations

from typing import Dict

import torch
from monai.networks.nets import SegResNet, SwinUNETR, UNet
from torch import nn

from asfda.models.config import ModelConfig

_DEFAULTS: Dict[str, Dict] = {
    # Batch norm on purpose: its running statistics are the stored source knowledge that DKD compares against.
    "UNet": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1, "norm": "batch"},
    "SegResNet": {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "norm": "batch"},
    "SwinUNETR": {"feature_size": 24},
}


def build_network(config: ModelConfig) -> nn.Module:
    if config.bundle is not None:
        from asfda.models.bundle import bundle_network

        return bundle_network(config)
    if config.nnunet is not None:  # nnunetv2 is optional: imported only for an nnU-Net version
        from asfda.models.nnunet_folder import require_nnunet

        require_nnunet()
        from asfda.models.nnunet_network import nnunet_network

        return nnunet_network(config.nnunet)
    args = {**_DEFAULTS[config.network], **config.network_args}
    common = {"in_channels": config.in_channels, "out_channels": config.out_channels}
    if config.network == "UNet":
        return UNet(spatial_dims=3, **common, **args)
    if config.network == "SegResNet":
        return SegResNet(spatial_dims=3, **common, **args)
    return SwinUNETR(spatial_dims=3, **common, **args)


def find_feature_module(network: nn.Module, config: ModelConfig) -> str:
    """Name of the deepest encoder module: at the coarsest grid, the widest output, the last to finish.

    Works for UNet (bottom block), SegResNet (last down layer) and SwinUNETR (encoder10) without a
    per-architecture table (decoder convolutions at that grid are narrower); a config may name the
    module instead.
    """
    if config.feature_module:
        names = dict(network.named_modules())
        if config.feature_module not in names:
            raise ValueError(f"feature_module {config.feature_module!r} is not a module of {config.network}")
        return config.feature_module
    finished: list = []
    handles = []
    for name, module in network.named_modules():
        if not name:
            continue

        def hook(_module, _inputs, output, name=name):
            if isinstance(output, torch.Tensor) and output.ndim == 5:
                finished.append((name, int(output.shape[2:].numel()), int(output.shape[1])))

        handles.append(module.register_forward_hook(hook))
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            device = next(network.parameters()).device
            network(torch.zeros(1, config.in_channels, *config.roi_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    coarsest = min(size for _, size, _ in finished)
    widest = max(width for _, size, width in finished if size == coarsest)
    return [name for name, size, width in finished if size == coarsest and width == widest][-1]
