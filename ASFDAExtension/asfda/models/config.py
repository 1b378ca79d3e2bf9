"""The small JSON config that says how to build a network and how to feed it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from asfda.core.errors import ConfigError

SUPPORTED_NETWORKS = ("UNet", "SegResNet", "SwinUNETR")
INTENSITY_MODES = ("zscore", "percentile", "ct_window", "none")
BLEND_MODES = ("gaussian", "constant")
PADDING_MODES = ("constant", "reflect", "replicate", "circular")
BUNDLE_FOLDER = "bundle"  # in a version folder: the MONAI bundle configs the version was imported from


@dataclass
class IntensityConfig:
    mode: str = "zscore"  # zscore over the volume, percentile range to [0,1], or a fixed CT window
    lower: float = 1.0  # percentile mode: lower percentile; ct_window mode: lower HU
    upper: float = 99.0

    def validate(self) -> None:
        if self.mode not in INTENSITY_MODES:
            raise ConfigError(f"intensity mode {self.mode!r} is not one of {', '.join(INTENSITY_MODES)}")
        if self.lower >= self.upper:
            raise ConfigError("intensity lower bound must be below the upper bound")


@dataclass
class ModelConfig:
    network: str = "UNet"
    network_args: Dict[str, Any] = field(default_factory=dict)
    in_channels: int = 1
    # name -> value; background must be 0. The worker rejects uploads with other values.
    labels: Dict[str, int] = field(default_factory=lambda: {"background": 0, "foreground": 1})
    label_colors: Dict[str, List[float]] = field(default_factory=dict)
    spacing: Optional[List[float]] = None  # resample to this spacing (mm) before the network; None keeps it
    orientation: str = "RAS"
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    roi_size: List[int] = field(default_factory=lambda: [64, 64, 64])
    sw_batch_size: int = 1
    sw_overlap: float = 0.25
    feature_module: Optional[str] = None  # module whose output is the pooled feature z(x); None: auto
    sw_mode: str = "gaussian"  # how overlapping sliding windows blend
    sw_padding_mode: str = "constant"  # how the sliding window pads a volume smaller than a patch
    # A folder next to config.json with a MONAI bundle's configs/ (inference.json, metadata.json). When set,
    # the bundle defines the network and the preprocessing; network_args, spacing, orientation and
    # intensity are then unused.
    bundle: Optional[str] = None
    # Written by the bundle importer from the checked configs (asfda.models.bundle_safety): the network's class
    # path and keyword arguments, and the preprocessing steps asfda builds, so a load needs no config parser.
    bundle_network: Optional[Dict[str, Any]] = None
    bundle_preprocessing: Optional[Dict[str, Any]] = None
    # Imported with --trust-bundle-code: MONAI's parser builds the bundle, evaluating its expressions.
    bundle_code_trusted: bool = False
    # Files and folders of the bundle besides configs/ that a version keeps (relative to its bundle folder): the
    # bundle's scripts/ package and every file its configs reference (e.g. DiNTS's models/search_code_*.pt).
    bundle_files: List[str] = field(default_factory=list)
    # How predictions go back to the image grid: False, argmax in network space then nearest neighbour (one
    # class-id map, no C-channel map on the original grid); True, the softmax probabilities are mapped back with
    # the preprocessing's own interpolation and the argmax taken there, as a bundle's Invertd(nearest_interp=false).
    invert_probabilities: bool = False
    # Written by `asfda model import --nnunet`: the results folder's plans.json and dataset.json, the configuration,
    # trainer, folds, checkpoint name and mirroring axes. When set, nnU-Net's own code builds the network and runs
    # the preprocessing, sliding window and export (asfda.models.nnunet_pipeline); network names the plans' class.
    nnunet: Optional[Dict[str, Any]] = None

    # Where `bundle` resolves on disk: set by `load` (next to config.json) or by the bundle importer.
    # Not a dataclass field, so it is never written to config.json.
    bundle_root = None

    @property
    def out_channels(self) -> int:
        return len(self.labels)

    @property
    def label_values(self) -> List[int]:
        return sorted(self.labels.values())

    def validate(self) -> ModelConfig:
        if self.nnunet is not None:
            missing = {"plans", "dataset", "configuration", "trainer", "folds"} - set(self.nnunet)
            if missing or not isinstance(self.nnunet.get("folds"), list) or not self.nnunet.get("folds"):
                raise ConfigError(f"nnunet settings incomplete: missing {', '.join(sorted(missing)) or 'folds'}")
            if self.bundle is not None:
                raise ConfigError("a config names either a bundle or nnunet settings, not both")
        elif self.bundle is None and self.network not in SUPPORTED_NETWORKS:
            raise ConfigError(f"network {self.network!r} is not one of {', '.join(SUPPORTED_NETWORKS)}")
        values = sorted(self.labels.values())
        if values != list(range(len(values))) or len(values) < 2:
            raise ConfigError(f"label values must be 0..C-1 with background 0 and C >= 2, got {values}")
        if len(self.roi_size) != 3 or min(self.roi_size) < 8:
            raise ConfigError(f"roi_size must be three sizes >= 8, got {self.roi_size}")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise ConfigError(f"spacing must be three positive numbers, got {self.spacing}")
        if self.sw_mode not in BLEND_MODES:
            raise ConfigError(f"sw_mode {self.sw_mode!r} is not one of {', '.join(BLEND_MODES)}")
        if self.sw_padding_mode not in PADDING_MODES:
            raise ConfigError(f"sw_padding_mode {self.sw_padding_mode!r} is not one of {', '.join(PADDING_MODES)}")
        for name in self.bundle_files:
            parts = Path(name).parts
            if not isinstance(name, str) or not parts or Path(name).is_absolute() or ".." in parts:
                raise ConfigError(f"bundle_files entry {name!r} is not a path inside the bundle folder")
        self.intensity.validate()
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["intensity"] = IntensityConfig(**data.get("intensity", {}))
        return cls(**data).validate()

    def save(self, path: Path) -> None:
        from asfda.core.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read model config ({exc})") from exc
        config = cls.from_dict(data)
        if config.bundle is not None:
            config.bundle_root = Path(path).parent / config.bundle
        return config
