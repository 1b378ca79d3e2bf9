"""Which weights file of a bundle asfda loads: the one the user picks (--weights), else the one the bundle's own
config names (a CheckpointLoader's `load_path`, or `modelname` under models/), else models/model.pt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from asfda.models.bundle_code import importable
from asfda.models.bundle_safety import RawBundle, UnsupportedBundle, UntrustedBundleCode, checked_value
from asfda.models.bundle_transforms import bundle_parser

DEFAULT_WEIGHTS = Path("models") / "model.pt"
_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class BundleWeights:
    path: Path  # absolute
    relative: str  # as shown to the user, relative to the bundle root
    source: str  # why this file: "--weights", the config key that names it, or "default"
    named: Optional[Path] = None  # the file the config names, when --weights chose another

    def files(self) -> Set[Path]:
        """Weights files a version never copies (it holds its own weights.pt)."""
        return {self.path} | ({self.named} if self.named is not None else set())

    def line(self) -> str:
        return f"weights {self.relative} ({self.source})"


def _checkpoint_loaders(config: Dict[str, Any]) -> Iterator[Tuple[List[str], Any]]:
    """Every CheckpointLoader's load_path in the raw config, with where it sits. Each object is visited once:
    YAML aliases share objects, and following them again could expand exponentially."""
    seen: Set[int] = set()
    stack: List[Tuple[List[str], Any]] = [([], config)]
    while stack:
        parts, node = stack.pop()
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if str(node.get("_target_", "")).rsplit(".", 1)[-1] == "CheckpointLoader" and "load_path" in node:
                yield parts + ["load_path"], node["load_path"]
            items = [(str(k), v) for k, v in node.items() if k != "_meta_"]
        else:
            items = [(str(i), v) for i, v in enumerate(node)]
        stack.extend((parts + [key], value) for key, value in reversed(items))


def _computed(raw: RawBundle, value: Any, parts: List[str], trust_code: bool) -> Any:
    """Literal expressions like "$@bundle_root + '/models/x.pt'" without running code; others only trusted."""
    try:
        return checked_value(raw, value, parts)
    except UntrustedBundleCode:
        if not trust_code:
            raise
        with importable(raw.root):
            return bundle_parser(raw.root).get_parsed_content("#".join(parts))


def _named(raw: RawBundle, trust_code: bool) -> Optional[Tuple[str, str]]:
    """(path as the config computes it, the key that names it), or None when the config names no file."""
    for parts, value in _checkpoint_loaders(raw.config):
        computed = _computed(raw, value, parts, trust_code)
        if isinstance(computed, str):
            return computed, "#".join(parts)
    modelname = raw.config.get("modelname")
    if modelname is not None:
        computed = _computed(raw, modelname, ["modelname"], trust_code)
        if isinstance(computed, str):
            return str(Path("models") / computed) if "/" not in computed else computed, "modelname"
    return None


def _inside(root: Path, value: str, what: str) -> Path:
    path = Path(value)
    path = (path if path.is_absolute() else root / path).resolve()
    if root != path and root not in path.parents:
        raise UnsupportedBundle(f"{what} = {value} is outside the bundle folder {root}; copy the weights into it")
    return path


def _offered(root: Path) -> List[str]:
    models = root / "models"
    found = sorted(p for p in models.iterdir() if p.suffix in _WEIGHT_SUFFIXES) if models.is_dir() else []
    return [str(p.relative_to(root)) for p in found]


def choose_weights(raw: RawBundle, chosen: Optional[Path] = None, trust_code: bool = False) -> BundleWeights:
    """The weights file to load, checked to exist inside the bundle; a missing one names the files it offers."""
    root = raw.root.resolve()
    named = _named(raw, trust_code)
    named_path = _inside(root, named[0], named[1]) if named is not None else None
    if chosen is not None:
        path, source = _inside(root, str(chosen), "--weights"), "--weights"
    elif named is None or named_path is None:
        path, source = root / DEFAULT_WEIGHTS, "default"
    else:
        path, source = named_path, f"named by {named[1]}"
    relative = str(path.relative_to(root))
    if not path.is_file():
        offered = [p for p in _offered(root) if p != relative]
        if not offered and (root / "models" / "model.ts").exists():
            raise UnsupportedBundle(
                f"{root}: only a TorchScript models/model.ts; asfda fine-tunes the network, so it needs the "
                "state dict models/model.pt"
            )
        hint = f"; it offers {', '.join(offered)}: choose one with --weights" if offered else ""
        raise UnsupportedBundle(f"{root}: missing {relative} ({source}){hint}")
    return BundleWeights(path, relative, source, named_path if named_path != path else None)
