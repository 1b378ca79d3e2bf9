"""The network of an imported nnU-Net model, built by nnU-Net's own code from the stored plans.

`get_network_from_plans` (nnunetv2) builds the dynamic_network_architectures U-Net the plans describe, as
nnU-Net's default trainer does, without deep supervision. The folds of `--fold all` are one module whose output
is the mean of the folds' logits, so the store keeps one state dict and fine-tuning adapts the ensemble.
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from asfda.models.nnunet_folder import UnsupportedNnUNet, check_configuration
from asfda.models.nnunet_pipeline import quiet_configuration

# Older plans name ResidualEncoderUNet under a module that dynamic_network_architectures has since merged into unet.
_MOVED = {
    "dynamic_network_architectures.architectures.residual_unet.": "dynamic_network_architectures.architectures.unet."
}


class NnUNetFolds(nn.Module):
    """The folds' networks; forward is the mean of their logits (nnU-Net averages the folds' logits too)."""

    def __init__(self, folds: List[nn.Module]):
        super().__init__()
        self.folds = nn.ModuleList(folds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.folds[0](x)
        for fold in self.folds[1:]:
            out = out + fold(x)
        return out / len(self.folds) if len(self.folds) > 1 else out


def _checked_architecture(configuration: ConfigurationManager) -> Dict[str, Any]:
    """The architecture (nnU-Net's ConfigurationManager converts plans older than 2.3) with class paths that are
    dynamic_network_architectures' or torch.nn's only: nnU-Net resolves these strings with pydoc.locate, which
    would import any module a plans file names."""
    arch = {
        "network_class_name": configuration.network_arch_class_name,
        "arch_kwargs": dict(configuration.network_arch_init_kwargs),
        "_kw_requires_import": list(configuration.network_arch_init_kwargs_req_import),
    }
    name = arch["network_class_name"]
    for old, new in _MOVED.items():
        if name.startswith(old):
            name = new + name[len(old) :]
    arch["network_class_name"] = name
    kwargs = arch.get("arch_kwargs") or {}
    for key in arch.get("_kw_requires_import") or []:
        value = kwargs.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith("torch.nn.")):
            raise UnsupportedNnUNet(f"plans.json architecture.arch_kwargs.{key} = {value!r} is not a torch.nn class")
    return arch


def nnunet_network(stored: Dict[str, Any]) -> nn.Module:
    """The (untrained) network of a version's stored nnU-Net settings (`ModelConfig.nnunet`)."""
    check_configuration(stored["plans"], stored["dataset"], stored["configuration"])
    plans_manager = PlansManager(stored["plans"])
    arch = _checked_architecture(quiet_configuration(plans_manager, stored["configuration"]))
    label_manager = plans_manager.get_label_manager(stored["dataset"])
    folds = []
    for _ in stored["folds"]:
        try:
            network = get_network_from_plans(
                arch["network_class_name"],
                arch.get("arch_kwargs") or {},
                arch.get("_kw_requires_import") or [],
                1,
                label_manager.num_segmentation_heads,
                allow_init=True,
                deep_supervision=False,
            )
        except Exception as exc:
            raise UnsupportedNnUNet(
                f"plans.json network {arch['network_class_name']} cannot be built: {type(exc).__name__}: "
                + " ".join(str(exc).split())[:300]
            ) from None
        folds.append(network)
    return NnUNetFolds(folds)
