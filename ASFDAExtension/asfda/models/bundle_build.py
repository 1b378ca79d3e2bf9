"""Build objects from a checked bundle section (plain JSON from bundle_safety) without MONAI's ConfigParser:
each `_target_` is an allow-listed class imported by path, called with its other keys as keyword arguments."""

from __future__ import annotations

from typing import Any, Dict

from asfda.models.bundle_failures import whole_cause
from asfda.models.bundle_safety import UnsupportedBundle, UntrustedBundleCode, resolve_target, target_path

# Classes that take a class or function by name (LoadImage's reader, SaveImage's writer) or a callable: asfda
# loads and saves volumes itself, so it never builds them.
_NEVER_BUILT_MODULES = ("monai.transforms.io.",)
_NEVER_BUILT_NAMES = {"Lambda", "Lambdad", "LambdaD", "LambdaDict", "RandLambda", "RandLambdad", "RandLambdaD"}


def build(node: Any, where: str) -> Any:
    """The object a checked node describes; lists drop disabled items as MONAI does."""
    if isinstance(node, list):
        built = [build(item, f"{where}.{i}") for i, item in enumerate(node) if not _disabled(item)]
        return built
    if not isinstance(node, dict):
        return node
    if "_target_" not in node:
        return {key: build(value, f"{where}.{key}") for key, value in node.items()}
    if _disabled(node):
        return None
    cls = resolve_target(node["_target_"], f"{where}._target_")  # again: a stored config may have been edited
    if cls.__module__.startswith(_NEVER_BUILT_MODULES) or cls.__name__ in _NEVER_BUILT_NAMES:
        raise UntrustedBundleCode(
            f"{where}._target_ = {target_path(cls)} takes a class or function by name; asfda loads volumes itself, "
            "remove it"
        )
    kwargs = {key: build(value, f"{where}.{key}") for key, value in node.items() if not key.startswith("_")}
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise UnsupportedBundle(f"{where} cannot be built: {whole_cause(exc, cls.__name__)}") from exc


def _disabled(node: Any) -> bool:
    return isinstance(node, dict) and node.get("_disabled_") is True


def stored_network(node: Dict[str, Any]) -> Dict[str, Any]:
    """The stored form of a checked network_def: class path and keyword arguments, plain JSON."""
    return {"target": node["_target_"], "kwargs": {k: v for k, v in node.items() if not k.startswith("_")}}


def network_node(stored: Dict[str, Any]) -> Dict[str, Any]:
    if not isinstance(stored, dict) or not isinstance(stored.get("kwargs", {}), dict) or "target" not in stored:
        raise UnsupportedBundle("bundle_network must be an object with 'target' and 'kwargs'")
    return {"_target_": stored["target"], **stored.get("kwargs", {})}
