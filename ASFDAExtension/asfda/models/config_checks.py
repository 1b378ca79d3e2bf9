"""Checks on a model.json as written by a user: missing keys whose defaults change results, bad nested keys.

`ModelConfig.from_dict` fills every missing key with a default. For most keys that is harmless; for the ones
below the default silently changes what the network sees or is, so importing without them is worth a
warning (and an error under `--strict`). The schema of the file is `asfda/schemas/model-config.schema.json`.
"""

from __future__ import annotations

import json
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from asfda.core.errors import ConfigError
from asfda.models.bundle_build import network_node
from asfda.models.bundle_safety import resolve_target
from asfda.models.config import IntensityConfig, ModelConfig
from asfda.models.networks import _DEFAULTS, build_network

SCHEMA_RESOURCE = "schemas/model-config.schema.json"

# key -> what its absence means
RESULT_CHANGING_KEYS = {
    "intensity": "intensity normalisation falls back to z-score over the volume; use the training normalisation",
    "network_args": "the network is built with asfda's defaults ({defaults}); options such as dropout or "
    "channel widths the weights were trained with are lost",
    "spacing": "volumes are not resampled; set the spacing the model was trained at (or null to keep it)",
    "labels": "labels default to background=0, foreground=1",
}


def schema() -> Dict[str, Any]:
    """The JSON Schema of model.json shipped with the package."""
    return json.loads(resources.files("asfda").joinpath(SCHEMA_RESOURCE).read_text())


def read_config_dict(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read model config ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config is a JSON object")
    return data


def check_config_dict(
    data: Dict[str, Any], folder: Optional[Path] = None, trust_code: bool = False
) -> Tuple[ModelConfig, List[str]]:
    """Build the effective config, raising ConfigError for what cannot work and listing result-changing defaults.

    `folder` is where the config file lies: a bundle config's `bundle` folder resolves there. A bundle config
    names its network by an allow-listed class (asfda.models.bundle_safety) unless it was imported with
    --trust-bundle-code, and then needs that flag again (`trust_code`)."""
    intensity = data.get("intensity", {})
    if not isinstance(intensity, dict):
        raise ConfigError("intensity must be an object with mode, lower, upper")
    unknown = set(intensity) - {f.name for f in fields(IntensityConfig)}
    if unknown:
        raise ConfigError(f"unknown intensity keys: {', '.join(sorted(unknown))}")
    if not isinstance(data.get("network_args", {}), dict):
        raise ConfigError("network_args must be an object of the MONAI network's keyword arguments")
    config = ModelConfig.from_dict(data)
    if config.bundle is not None:
        if folder is None or not (Path(folder) / config.bundle).is_dir():
            raise ConfigError(f"the config names bundle folder {config.bundle!r}, which is not beside it")
        config.bundle_root = Path(folder) / config.bundle
        _check_bundle_network(config, trust_code)
        return config, []  # the bundle defines network and preprocessing; nothing below applies
    try:
        build_network(config)
    except TypeError as exc:  # a keyword the MONAI network does not take
        raise ConfigError(f"network_args for {config.network}: {exc}") from None
    warnings = []
    for key, meaning in RESULT_CHANGING_KEYS.items():
        if key not in data:
            defaults = json.dumps(_DEFAULTS.get(config.network, {}))
            warnings.append(f"'{key}' missing: {meaning.format(defaults=defaults)}")
    return config, warnings


def _check_bundle_network(config: ModelConfig, trust_code: bool) -> None:
    """The same rule as for a bundle's configs: an allow-listed class, or code the user said they trust."""
    if config.bundle_code_trusted:
        if not trust_code:
            raise ConfigError(
                "the config was imported with --trust-bundle-code (MONAI's parser runs the bundle's code); "
                "import it with --trust-bundle-code again if you trust its author"
            )
        return
    if config.bundle_network is not None:
        cls = resolve_target(network_node(config.bundle_network)["_target_"], "bundle_network.target")
        if cls.__name__ != config.network:
            raise ConfigError(f"network {config.network!r} is not the class bundle_network names ({cls.__name__})")
    else:
        resolve_target(config.network, "network")
    build_network(config)  # a version without the stored form: its configs are checked before anything is built
