"""The whole cause of a failure in one line, and the remedy where the cause is a known MONAI or torch change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional

import monai
import torch

_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(?P<name>\w+)'")


@dataclass(frozen=True)
class VersionChange:
    cls: str  # class name the change applies to
    argument: str
    since: str  # first MONAI version without the argument
    remedy: str


KNOWN_CHANGES = (
    VersionChange(
        "SwinUNETR",
        "img_size",
        "1.5",
        "remove img_size from the bundle's network_def (SwinUNETR takes any input size now), or install MONAI < 1.5",
    ),
)


def versions() -> str:
    return f"MONAI {monai.__version__}, torch {torch.__version__}"


def _messages(exc: BaseException) -> List[str]:
    """Every exception in the chain (cause or context), each flattened to one line, without repeats."""
    seen: List[str] = []
    current: Optional[BaseException] = exc
    while current is not None and len(seen) < 8:
        text = " ".join(str(current).split()) or "(no message)"
        line = f"{type(current).__name__}: {text}"
        if not any(line in earlier for earlier in seen):
            seen.append(line)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


def whole_cause(exc: BaseException, cls: str = "") -> str:
    """`TypeError: ... <- KeyError: ...`, plus the installed versions and a remedy for a known change."""
    cause = " <- ".join(_messages(exc))
    keyword = _UNEXPECTED_KEYWORD.search(cause)
    if keyword:
        for change in KNOWN_CHANGES:
            if change.argument == keyword.group("name") and change.cls in (cls, *_class_names(cause)):
                return (
                    f"{cause}; {change.cls} has no '{change.argument}' since MONAI {change.since} "
                    f"(installed: {versions()}): {change.remedy}"
                )
        return f"{cause} (installed: {versions()}; the bundle may be written for another MONAI version)"
    return cause


def _class_names(text: str) -> List[str]:
    return re.findall(r"(\w+)\.__init__\(\)", text)
