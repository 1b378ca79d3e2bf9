"""Loading weights from disk into a network, with a clear report and never a silent partial load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping

import torch
from torch import nn

from asfda.core.errors import WeightsMismatch

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "network", "net")
# Heads of MONAI's self-supervised Swin pre-training that a segmentation network has no use for.
_SSL_HEAD_PREFIXES = ("rotation_head", "contrastive_head", "convTrans3d", "mask_token", "norm.")


@dataclass
class LoadReport:
    layout: str  # "state_dict", "checkpoint" or "swin_ssl"
    loaded: int
    fresh: List[str] = field(default_factory=list)  # model tensors left at initialisation (decoder)
    ignored: List[str] = field(default_factory=list)  # checkpoint tensors not used (pre-training heads)

    def summary(self) -> str:
        text = f"{self.layout}: loaded {self.loaded} tensors"
        if self.fresh:
            text += f", {len(self.fresh)} left fresh (decoder)"
        if self.ignored:
            text += f", {len(self.ignored)} pre-training head tensors ignored"
        return text


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def read_state_dict(path: Path) -> tuple:
    """Return (layout, state dict) from a plain state dict or a checkpoint dict."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMismatch(
            f"{Path(path).name}: cannot read weights ({type(exc).__name__}: {str(exc)[:160]})"
        ) from exc
    layout = "state_dict"
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj, layout = obj[key], "checkpoint"
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatch(f"{Path(path).name}: not a state dict or a checkpoint with one")
    return layout, _strip_prefix(obj, "module.")


def _is_swin_ssl(state: Mapping[str, torch.Tensor], network: nn.Module) -> bool:
    return (
        hasattr(network, "swinViT")
        and any(k.startswith("layers1.") for k in state)
        and not any(k.startswith("swinViT.") for k in state)
    )


def _examples(keys: List[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def _mismatch_message(missing: List[str], unexpected: List[str], shapes: List[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({_examples(shapes, 2)})")
    return "weights do not fit the network: " + "; ".join(parts)


def load_weights(network: nn.Module, path: Path) -> LoadReport:
    layout, state = read_state_dict(Path(path))
    return load_state(network, layout, state)


def load_state(network: nn.Module, layout: str, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load `state` strictly (the Swin pre-training layout: its encoder part); WeightsMismatch with a report."""
    model_state = network.state_dict()
    ignored: List[str] = []
    if _is_swin_ssl(state, network):
        layout = "swin_ssl"
        mapped = {}
        for key, value in state.items():
            if key.startswith(_SSL_HEAD_PREFIXES) or f"swinViT.{key}" not in model_state:
                ignored.append(key)
            else:
                mapped[f"swinViT.{key}"] = value
        state = mapped
        required = [k for k in model_state if k.startswith("swinViT.")]
    else:
        required = list(model_state)
    missing = [k for k in required if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(model_state[k].shape)}"
        for k in state
        if k in model_state and state[k].shape != model_state[k].shape
    ]
    # The Swin pre-training layout covers the encoder only; anything else it lacks is a real mismatch.
    if missing or unexpected or shapes or (layout == "swin_ssl" and len(state) == 0):
        raise WeightsMismatch(_mismatch_message(missing, unexpected, shapes))
    network.load_state_dict(state, strict=(layout != "swin_ssl"))
    fresh = [k for k in model_state if k not in state]
    return LoadReport(layout=layout, loaded=len(state), fresh=fresh, ignored=ignored)
