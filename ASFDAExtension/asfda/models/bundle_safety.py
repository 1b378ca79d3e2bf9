"""Check a MONAI bundle's raw configs before anything of them runs.

MONAI's ConfigParser evaluates every `$` expression and instantiates any `_target_`, so a bundle's configs are
code. Here the raw JSON/YAML (read by MONAI's own reader: json / yaml safe loading, nothing evaluated) is walked
instead: the sections asfda builds (network, preprocessing, inferer) and everything they reference are resolved
into plain JSON, refusing expressions, classes outside an allow-list and references that leave the bundle's
configs. What comes out is built by `asfda.models.bundle_build` without a parser.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from monai.bundle import ConfigParser

from asfda.core.errors import ConfigError
from asfda.models.bundle_expressions import NotALiteral, evaluate_literal
from asfda.models.bundle_failures import whole_cause

# Packages whose classes a bundle may name; short names ("UNet", "Compose") are looked up in these modules.
ALLOWED_PACKAGES = ("monai.networks", "monai.transforms", "monai.inferers", "torch.nn")
SHORT_NAME_MODULES = (
    "monai.networks.nets",
    "monai.networks.blocks",
    "monai.networks.layers",
    "monai.transforms",
    "monai.inferers",
    "torch.nn",
)
# What asfda reads of the inferer; its other keys (device, progress, ...) are never looked at.
INFERER_KEYS = ("roi_size", "sw_batch_size", "overlap", "mode", "padding_mode")
# Ids asfda sets itself before building, whatever the bundle says.
OVERRIDDEN_IDS = {"device": "cpu"}
TRUST_REMEDY = (
    "asfda runs no code from a bundle; if you trust its author, import it with --trust-bundle-code "
    "(MONAI then evaluates its configs at every load)"
)
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_SPECIAL_KEYS = {"_target_", "_disabled_", "_requires_", "_desc_", "_mode_"}
_SEPARATOR = re.compile(r"::|#")
_MACRO_PATH = re.compile(r"^(?P<path>[^#:]*?\.(?:json|ya?ml))(?=#|::|$)", re.IGNORECASE)
_MAX_DEPTH = 64  # references followed in a chain; deeper means a cycle MONAI would reject too
# Values visited after substituting references: YAML aliases or references that each double the one before
# would otherwise expand exponentially (a "billion laughs" config).
_MAX_VALUES = 200_000


class UnsupportedBundle(ConfigError):
    """A bundle asfda cannot honour; the message says why in one line."""


class UntrustedBundleCode(UnsupportedBundle):
    """The bundle asks asfda to run code (an expression or a class outside the allow-list)."""


def config_file(configs: Path, stem: str) -> Optional[Path]:
    """configs/<stem>.json, .yaml or .yml; two of them is ambiguous and refused."""
    found = [configs / f"{stem}{suffix}" for suffix in CONFIG_SUFFIXES if (configs / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise UnsupportedBundle(f"{configs}: both {' and '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def read_raw_file(path: Path) -> Dict[str, Any]:
    try:
        data = ConfigParser.load_config_files(str(path))
    except Exception as exc:  # json/yaml syntax, duplicate keys, unreadable file
        raise UnsupportedBundle(f"{path}: cannot read the bundle config: {whole_cause(exc)}") from exc
    if not isinstance(data, dict):
        raise UnsupportedBundle(f"{path}: a bundle config is a mapping of ids to values")
    return data


@dataclass
class RawBundle:
    """A bundle's inference config with its metadata under `_meta_`, exactly as written (nothing evaluated)."""

    root: Path
    config: Dict[str, Any]
    inference_file: Path

    @classmethod
    def read(cls, root: Path) -> RawBundle:
        configs = Path(root) / "configs"
        inference, metadata = config_file(configs, "inference"), config_file(configs, "metadata")
        if inference is None or metadata is None:
            pairs = (("inference", inference), ("metadata", metadata))
            missing = [f"configs/{stem}.json" for stem, path in pairs if path is None]
            raise UnsupportedBundle(f"{root}: not a MONAI bundle, missing {', '.join(missing)} (or .yaml)")
        config = read_raw_file(inference)
        config["_meta_"] = read_raw_file(metadata)
        return cls(Path(root), config, inference)

    def section(self, key: str) -> Any:
        """A top-level section raw, following whole-string `@id` references (for reading names only)."""
        return self.follow(self.config.get(key), key)

    def follow(self, node: Any, where: str) -> Any:
        for _ in range(_MAX_DEPTH):
            if not (isinstance(node, str) and node.startswith("@")):
                return node
            try:
                node = self.lookup(_split(node[1:]))
            except KeyError:
                raise UnsupportedBundle(f"{where} = {node} points at no id of the bundle's configs") from None
        raise UnsupportedBundle(f"the bundle's {where} references itself")

    def lookup(self, parts: List[str], config: Optional[Any] = None) -> Any:
        node = self.config if config is None else config
        for part in parts:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(part)
        return node


def _split(config_id: str) -> List[str]:
    return [part for part in _SEPARATOR.split(config_id) if part != ""] if config_id else []


def _shown(parts: List[str]) -> str:
    return ".".join(parts) or "(root)"


def resolve_target(name: Any, where: str) -> type:
    """The allow-listed class `name` names (dotted or short), imported from an allowed package only."""
    if not isinstance(name, str) or name.startswith(("$", "@", "%")):
        raise UntrustedBundleCode(f"{where} = {name!r} is computed, not a class name; {TRUST_REMEDY}")
    found: Any = None
    if "." not in name and not name.startswith("_"):
        for module_name in SHORT_NAME_MODULES:
            found = getattr(importlib.import_module(module_name), name, None)
            if found is not None:
                break
    elif any(name.startswith(package + ".") for package in ALLOWED_PACKAGES):
        found = _import_dotted(name)
    if not (isinstance(found, type) and any(found.__module__.startswith(p + ".") for p in ALLOWED_PACKAGES)):
        allowed = ", ".join(f"{p}.*" for p in ALLOWED_PACKAGES)
        raise UntrustedBundleCode(f"{where} = {name} is not a class of {allowed}; {TRUST_REMEDY}")
    return found


def target_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_dotted(name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes
        module_name = ".".join(parts[:cut])
        if "__" in module_name or not any(
            module_name == p or module_name.startswith(p + ".") for p in ALLOWED_PACKAGES
        ):
            break  # never import outside the allowed packages (nor `torch.nn.__init__` again)
        try:
            node: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if attribute.startswith("_"):
                return None
            node = getattr(node, attribute, None)
        return node
    return None


class _Walker:
    def __init__(self, raw: RawBundle):
        self.raw = raw
        self.visited = 0

    def resolve(self, node: Any, parts: List[str], depth: int = 0) -> Any:
        self.visited += 1
        if self.visited > _MAX_VALUES:
            raise UnsupportedBundle(
                f"{_shown(parts)}: the section expands to more than {_MAX_VALUES} values through its references"
            )
        if depth > _MAX_DEPTH:
            raise UnsupportedBundle(f"{_shown(parts)}: references nest deeper than {_MAX_DEPTH} (a cycle?)")
        if isinstance(node, str):
            return self._string(node, parts, depth)
        if isinstance(node, list):
            return [self.resolve(item, parts + [str(i)], depth) for i, item in enumerate(node)]
        if isinstance(node, dict):
            return self._mapping(node, parts, depth)
        return node

    def _string(self, value: str, parts: List[str], depth: int) -> Any:
        where = _shown(parts)
        if value.startswith("$"):
            try:
                return evaluate_literal(value[1:], lambda ref: self._reference(ref, parts, where, depth))
            except NotALiteral as exc:
                raise UntrustedBundleCode(
                    f"{where} = {_short(value)} is a Python expression asfda does not run: {exc}; {TRUST_REMEDY}"
                ) from None
        if value.startswith("@"):
            return self._reference(value[1:], parts, where, depth)
        if value.startswith("%"):
            return self.resolve(self._macro(value[1:], parts, where), parts, depth + 1)
        return value

    def _reference(self, config_id: str, parts: List[str], where: str, depth: int) -> Any:
        target = self._absolute(config_id, parts, where)
        key = "#".join(target)
        if key in OVERRIDDEN_IDS:
            return OVERRIDDEN_IDS[key]
        if key == "bundle_root":
            return str(self.raw.root)
        try:
            referenced = self.raw.lookup(target)
        except KeyError:
            raise UnsupportedBundle(f"{where}: @{config_id} points at no id of the bundle's configs") from None
        return self.resolve(referenced, target, depth + 1)

    def _absolute(self, config_id: str, parts: List[str], where: str) -> List[str]:
        """MONAI's relative ids: each leading separator is one level up from the item holding the reference."""
        match = re.match(r"^((?:#|::)+)", config_id)
        if not match:
            return _split(config_id)
        levels = len(_SEPARATOR.findall(match.group(1)))
        if levels > len(parts):
            raise UnsupportedBundle(f"{where}: the relative id {config_id} leaves the bundle's config")
        return parts[: len(parts) - levels] + _split(config_id[match.end() :])

    def _macro(self, macro: str, parts: List[str], where: str) -> Any:
        match = _MACRO_PATH.match(macro)
        path = match.group("path") if match else ""
        if not path:  # this config; a leading separator is relative, as for references
            source: Any = None
            target = self._absolute(macro, parts, where)
        else:
            config_id = macro[len(path) :]
            configs = (self.raw.root / "configs").resolve()
            candidates = [(self.raw.root / path).resolve(), (configs / path).resolve()]
            inside = [c for c in candidates if c.is_file() and configs in c.parents]
            if not inside or Path(path).is_absolute() or "://" in path:
                raise UntrustedBundleCode(
                    f"{where} = %{macro} reads a file outside the bundle's configs/; copy what it needs into them"
                )
            source, target = read_raw_file(inside[0]), _split(config_id)
        try:
            return self.raw.lookup(target, source)
        except KeyError:
            raise UnsupportedBundle(f"{where} = %{macro} points at no id of the bundle's configs") from None

    def _mapping(self, node: Dict[str, Any], parts: List[str], depth: int) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if "_target_" in node:
            where = _shown(parts + ["_target_"])
            out["_target_"] = target_path(resolve_target(node["_target_"], f"{where}"))
            mode = node.get("_mode_", "default")
            if mode != "default":
                raise UntrustedBundleCode(
                    f"{_shown(parts + ['_mode_'])} = {mode!r}: only the default mode (build the class) is allowed; "
                    f"{TRUST_REMEDY}"
                )
            disabled = node.get("_disabled_", False)
            if not (isinstance(disabled, bool) or str(disabled).strip().lower() in ("true", "false")):
                raise UntrustedBundleCode(
                    f"{_shown(parts + ['_disabled_'])} = {_short(str(disabled))} is not true or false; {TRUST_REMEDY}"
                )
            if disabled is True or str(disabled).strip().lower() == "true":
                out["_disabled_"] = True
            # Checked like any value (an expression is refused), then dropped: asfda builds nothing it names.
            self.resolve(node.get("_requires_"), parts + ["_requires_"], depth)
        for key, value in node.items():
            if key in _SPECIAL_KEYS:
                continue
            if not isinstance(key, str):
                raise UnsupportedBundle(f"{_shown(parts)}: key {key!r} is not a string")
            out[key] = self.resolve(value, parts + [key], depth)
        return out


def checked_value(raw: RawBundle, node: Any, parts: List[str]) -> Any:
    """`node` (found at `parts`) with references, macros and literal expressions substituted and every class
    checked: plain JSON, safe to build."""
    return _Walker(raw).resolve(node, parts)


def checked_section(raw: RawBundle, key: str) -> Any:
    if key not in raw.config:
        raise UnsupportedBundle(f"the bundle's inference config has no {key!r}")
    return checked_value(raw, raw.config[key], [key])


def checked_inferer(raw: RawBundle) -> Dict[str, Any]:
    """The inferer's class and the settings asfda reads, checked; nothing else of it is looked at."""
    node = raw.section("inferer")
    if not isinstance(node, dict) or "_target_" not in node:
        raise UnsupportedBundle("the bundle's inferer is not a mapping with _target_")
    kept = {key: node[key] for key in ("_target_", *INFERER_KEYS) if key in node}
    return checked_value(raw, kept, ["inferer"])


def _short(value: str, limit: int = 80) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
