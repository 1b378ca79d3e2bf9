"""Which torch device a loop runs on: resolved once per session, refused in one line when unusable."""

from __future__ import annotations

import re

import torch

from asfda.core.errors import UnusableDevice

__all__ = ["AUTO", "resolve_device"]

AUTO = "auto"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(name: str = AUTO) -> str:
    """`auto` -> `cuda` when torch sees a CUDA device, else `cpu`; `cpu` and `cuda[:N]` checked as given.

    Args:
        name: auto, cpu, cuda or cuda:N.
    Returns:
        the device string to hand to torch.
    Raises:
        UnusableDevice: a CUDA device this torch cannot use, or a name that is no device.
    """
    name = (name or AUTO).strip().lower()
    if name == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    match = _CUDA.match(name)
    if match is None:
        raise UnusableDevice(f"device {name!r} is not auto, cpu or cuda[:N]")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise UnusableDevice(
            f"device {name!r}: this torch {torch.__version__} ({build}) sees no CUDA device; use --device cpu or auto"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UnusableDevice(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return name
