"""A MONAI bundle's preprocessing, split into the spatial part (inverted for predictions, replayed on labels
with nearest-neighbour interpolation) and the intensity part (image only), in the shape asfda.models.preprocess uses."""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirst, InvertibleTransform, MapTransform, Randomizable

from asfda.core.errors import ConfigError

# asfda loads volumes, adds the channel and keeps tensors on the CPU itself; these bundle steps are dropped.
SKIPPED_STEPS = {
    "LoadImage",
    "EnsureChannelFirst",
    "AddChannel",
    "EnsureType",
    "ToTensor",
    "ToDevice",
    "CastToType",
    "Identity",
    "ToNumpy",
    "ToMetaTensor",
}
# Deterministic, content-independent geometry steps that MONAI can invert and that apply to a label map too.
SPATIAL_STEPS = {"Orientation", "Spacing", "SpatialPad", "DivisiblePad", "CenterSpatialCrop", "Resize"}
_INTENSITY_MODULE = "monai.transforms.intensity"
_DICT_SUFFIXES = ("Dict", "d", "D")


class UnsupportedBundle(ConfigError):
    """A bundle asfda cannot honour; the message says why in one line."""


def step_name(item: Any) -> str:
    """'monai.transforms.Spacingd' -> 'Spacing' (array and dictionary forms share one name)."""
    import monai.transforms

    target = str(item.get("_target_", "")) if isinstance(item, dict) else ""
    name = target.lstrip("$").rsplit(".", 1)[-1]
    for suffix in _DICT_SUFFIXES:
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and (hasattr(monai.transforms, base) or base in SKIPPED_STEPS | {"Invert"}):
            return base
    return name


def bundle_parser(bundle_root: Path) -> ConfigParser:
    """A fresh parser over the bundle's inference and metadata configs, with `bundle_root` pointing at it."""
    configs = Path(bundle_root) / "configs"
    parser = ConfigParser()
    try:
        parser.read_meta(str(configs / "metadata.json"))
        parser.read_config(str(configs / "inference.json"))
    except Exception as exc:  # json errors, missing files
        raise UnsupportedBundle(f"{configs}: cannot read the bundle configs ({type(exc).__name__}: {exc})") from exc
    parser["bundle_root"] = str(bundle_root)
    parser["device"] = "cpu"  # asfda moves the network itself; keeps EnsureTyped(device=@device) off a GPU
    return parser


def transform_list_id(parser: ConfigParser, section: str) -> Optional[str]:
    """Config id of the list of transforms under `section` (a Compose), following one `@id` reference."""
    if section not in parser:
        return None
    node = parser[section]
    list_id = f"{section}#transforms"
    if isinstance(node, dict) and "transforms" in node:
        transforms = node["transforms"]
    elif isinstance(node, list):
        transforms, list_id = node, section
    else:
        raise UnsupportedBundle(f"the bundle's {section} is not a Compose of transforms")
    if isinstance(transforms, str) and transforms.startswith("@"):
        list_id = transforms[1:]
        transforms = parser[list_id]
    if not isinstance(transforms, list):
        raise UnsupportedBundle(f"the bundle's {section} transforms are an expression, not a list asfda can read")
    return list_id


def enabled_steps(parser: ConfigParser, list_id: str) -> List[int]:
    return [i for i, item in enumerate(parser[list_id]) if not (isinstance(item, dict) and item.get("_disabled_"))]


class _OnImage(InvertibleTransform):
    """Runs a dictionary transform on a bare tensor (asfda keeps images as MetaTensors, not dicts)."""

    def __init__(self, transform: MapTransform, key: str):
        self.transform = transform
        self.key = key

    def __call__(self, data):
        return self.transform({self.key: data})[self.key]

    def inverse(self, data):
        return self.transform.inverse({self.key: data})[self.key]


def _as_array_step(step: Any, name: str, key: Optional[str]) -> Any:
    if isinstance(step, Randomizable):
        raise UnsupportedBundle(f"preprocessing step {name} is random; asfda needs a deterministic preprocessing")
    if isinstance(step, MapTransform):
        step.allow_missing_keys = True  # bundles often list a label key too; asfda passes only the image
        if key not in step.keys:
            raise UnsupportedBundle(f"preprocessing step {name} does not act on the image key {key!r}")
        return _OnImage(step, key)
    return step


@dataclass
class BundlePreprocessing:
    spatial: Compose  # (X, Y, Z) volume -> (1, X', Y', Z'), invertible
    intensity: Compose  # image only
    image_key: str
    steps: List[str]  # names of the steps kept, in order, for the import report


def _image_key(parser: ConfigParser, list_id: str, indices: List[int]) -> str:
    for i in indices:
        keys = parser[list_id][i].get("keys") if isinstance(parser[list_id][i], dict) else None
        if keys is not None:
            resolved = parser.get_parsed_content(f"{list_id}#{i}#keys")
            resolved = [resolved] if isinstance(resolved, str) else list(resolved)
            return resolved[0]
    return "image"


def read_preprocessing(bundle_root: Path, label: bool = False) -> BundlePreprocessing:
    """Instantiate the bundle's preprocessing. For labels, interpolating steps use nearest neighbour.

    Intensity steps run after the spatial ones whatever their order in the bundle: for the windowing and
    normalisation steps bundles use, this changes values only by interpolation rounding.
    """
    parser = bundle_parser(bundle_root)
    list_id = transform_list_id(parser, "preprocessing")
    if list_id is None:
        raise UnsupportedBundle("the bundle's inference config has no 'preprocessing'")
    indices = enabled_steps(parser, list_id)
    key = _image_key(parser, list_id, indices)
    spatial: List[Any] = [EnsureChannelFirst(channel_dim="no_channel")]
    intensity: List[Any] = []
    names: List[str] = []
    for i in indices:
        item = parser[list_id][i]
        name = step_name(item)
        if name in SKIPPED_STEPS:
            continue
        if label and name in SPATIAL_STEPS and isinstance(item, dict):
            parser[f"{list_id}#{i}"] = _with_nearest(item)
        try:
            with warnings.catch_warnings():  # bundles written before MONAI changed Orientation's default labels
                warnings.filterwarnings("ignore", message=".*Orientationd?.__init__:labels", category=FutureWarning)
                step = parser.get_parsed_content(f"{list_id}#{i}", lazy=False)
        except Exception as exc:
            raise UnsupportedBundle(f"preprocessing step {name} cannot be built ({type(exc).__name__}: {exc})") from exc
        if name in SPATIAL_STEPS:
            spatial.append(_as_array_step(step, name, key))
        elif type(step).__module__.startswith(_INTENSITY_MODULE):
            intensity.append(_as_array_step(step, name, key))
        else:
            raise UnsupportedBundle(
                f"preprocessing step {name} is not supported (asfda replays {', '.join(sorted(SPATIAL_STEPS))} "
                "and intensity steps, and loads and types volumes itself)"
            )
        names.append(name)
    return BundlePreprocessing(Compose(spatial), Compose(intensity), key, names)


def _with_nearest(item: Dict[str, Any]) -> Dict[str, Any]:
    """The same step with its interpolation mode set to nearest (labels must keep their values)."""
    import monai.transforms

    item = copy.deepcopy(item)
    cls = getattr(monai.transforms, str(item["_target_"]).lstrip("$").rsplit(".", 1)[-1], None)
    if cls is not None and "mode" in inspect.signature(cls.__init__).parameters:
        item["mode"] = "nearest"
    return item


@functools.lru_cache(maxsize=16)
def _cached(bundle_root: str, label: bool, _changed: int) -> BundlePreprocessing:
    return read_preprocessing(Path(bundle_root), label)


def _preprocessing(bundle_root: Path, label: bool) -> BundlePreprocessing:
    # Parsed once per bundle folder; the config's change time in the key catches an edited bundle.
    changed = (Path(bundle_root) / "configs" / "inference.json").stat().st_mtime_ns
    return _cached(str(bundle_root), label, changed)


def bundle_spatial_transforms(bundle_root: Path, label: bool = False) -> Compose:
    return _preprocessing(bundle_root, label).spatial


def bundle_intensity_transform(bundle_root: Path) -> Compose:
    return _preprocessing(bundle_root, False).intensity
