"""What a trusted bundle needs beyond its configs: its own Python package importable while MONAI's parser builds
it (as MONAI's bundle runner puts the bundle root on sys.path), and the files its configs reference, so a version
folder holding copies of them loads without the original bundle folder."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterator, List, Set

from asfda.models.bundle_safety import RawBundle

SCRIPTS = "scripts"  # the Model Zoo's folder for a bundle's own networks and transforms
_PATH_LIKE = re.compile(r"[\w.\-/]+")


def _top_level_names(root: Path) -> Set[str]:
    """Modules an import could find at the bundle root: packages and single .py files."""
    names = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in root.glob("*.py")}
    return names | {SCRIPTS}


def _owned(name: str, tops: Set[str]) -> bool:
    return name.split(".", 1)[0] in tops


@contextlib.contextmanager
def importable(root: Path) -> Iterator[None]:
    """The bundle root first on sys.path for the build only. Modules of the bundle's own names (`scripts` and
    what lies beside it) are set aside before and dropped after, so two bundles that both ship a `scripts`
    package never get each other's classes."""
    root = Path(root).resolve()
    tops = _top_level_names(root) if root.is_dir() else {SCRIPTS}
    saved = {name: module for name, module in sys.modules.items() if _owned(name, tops)}
    for name in saved:
        del sys.modules[name]
    entry = str(root)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        for name in [name for name in sys.modules if _owned(name, tops)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _strings(config: Dict[str, Any]) -> Iterator[str]:
    """Every string value of the raw config, each shared (YAML alias) object visited once."""
    seen: Set[int] = set()
    stack: List[Any] = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)


def referenced_files(raw: RawBundle, leave_out: Set[Path]) -> List[str]:
    """Paths under the bundle root (relative, POSIX) that the configs' strings name and that exist, outside
    configs/ (copied anyway) and `leave_out` (the weights file, loaded into the version's own weights.pt);
    plus scripts/ when the bundle ships one."""
    root = raw.root.resolve()
    configs = root / "configs"
    found: Set[str] = set()
    for value in _strings(raw.config):
        for token in _PATH_LIKE.findall(value):
            candidate = (root / token.lstrip("/")).resolve()
            inside = root in candidate.parents and configs != candidate and configs not in candidate.parents
            if inside and candidate.is_file() and candidate not in leave_out:
                found.add(PurePosixPath(candidate.relative_to(root)).as_posix())
    if (root / SCRIPTS).is_dir():
        found = {f for f in found if not f.startswith(f"{SCRIPTS}/")} | {SCRIPTS}
    return sorted(found)
