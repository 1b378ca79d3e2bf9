"""A MONAI bundle's preprocessing, split into the spatial part (inverted for predictions, replayed on labels
with nearest-neighbour interpolation) and the intensity part (image only), in the shape asfda.models.preprocess uses."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirst, InvertibleTransform, MapTransform, Randomizable

from asfda.models.bundle_build import build
from asfda.models.bundle_code import importable
from asfda.models.bundle_crop import POINTWISE_STEPS, ForegroundCrop
from asfda.models.bundle_failures import whole_cause
from asfda.models.bundle_safety import RawBundle, UnsupportedBundle, checked_value, config_file, resolve_target
from asfda.models.config import ModelConfig

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
# Spatial steps whose geometry follows the image's content: the same box cannot be replayed on a label map
# alone, which asfda brings into the network's space on its own. Sliding-window inference covers the whole
# volume, so removing the crop changes only where the network looks, not what it can see.
# Steps refused with a reason of their own (prefixed to the general one).
_CONTENT_DEPENDENT = {
    "RandCropByPosNegLabel": ": it samples random training patches around a label, which inference has not",
}
# Its box follows the image's content: recorded on the image, replayed on labels (asfda.models.bundle_crop).
CROP_STEP = "CropForeground"
_DICT_SUFFIXES = ("Dict", "d", "D")


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
    """MONAI's parser over the bundle's configs: only for a bundle imported with --trust-bundle-code."""
    raw = RawBundle.read(Path(bundle_root))  # finds the JSON or YAML files, refuses unreadable ones
    parser = ConfigParser()
    parser.read_meta(str(config_file(raw.root / "configs", "metadata")))
    parser.read_config(str(raw.inference_file))
    parser["bundle_root"] = str(bundle_root)
    parser["device"] = "cpu"  # asfda moves the network itself; keeps EnsureTyped(device=@device) off a GPU
    return parser


def transform_list(node: Any, section: str) -> List[Any]:
    """The list of transforms of a section (a Compose or a bare list), its items as written."""
    transforms = node.get("transforms") if isinstance(node, dict) else node
    if not isinstance(transforms, list):
        raise UnsupportedBundle(f"the bundle's {section} is not a Compose of a list of transforms asfda can read")
    return transforms


def enabled(items: List[Any]) -> List[Any]:
    return [item for item in items if not (isinstance(item, dict) and _truthy(item.get("_disabled_")))]


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


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
    written = f"{name}d" if isinstance(step, MapTransform) else name
    if isinstance(step, Randomizable):
        raise UnsupportedBundle(
            f"preprocessing step {name} is random (an augmentation; asfda needs a deterministic preprocessing): "
            f"remove {written} from the bundle's preprocessing"
        )
    if isinstance(step, MapTransform):
        step.allow_missing_keys = True  # bundles often list a label key too; asfda passes only the image
        if key not in step.keys:
            raise UnsupportedBundle(
                f"preprocessing step {name} does not act on the image key {key!r}: add {key!r} to its keys or "
                f"remove {written} from the bundle's preprocessing"
            )
        return _OnImage(step, key)
    return step


@dataclass
class BundlePreprocessing:
    spatial: Compose  # (X, Y, Z) volume -> (1, X', Y', Z'), invertible
    intensity: Compose  # image only
    image_key: str
    steps: List[str]  # names of the steps kept, in order, for the import report


def checked_preprocessing(raw: RawBundle) -> Any:
    """The preprocessing section checked (asfda.models.bundle_safety). Of the steps asfda does itself (loading,
    channel, type) only the name and the keys are read, so nothing else of them needs checking."""
    node = raw.section("preprocessing")
    if node is None:
        raise UnsupportedBundle("the bundle's inference config has no 'preprocessing'")
    if isinstance(node, dict):
        node = {**node, "transforms": raw.follow(node.get("transforms"), "preprocessing.transforms")}
    items = [raw.follow(item, "preprocessing") for item in transform_list(node, "preprocessing")]
    kept = [
        {k: item[k] for k in ("_target_", "_disabled_", "keys") if k in item}
        if isinstance(item, dict) and step_name(item) in SKIPPED_STEPS
        else item
        for item in items
    ]
    parts = ["preprocessing", "transforms"] if isinstance(node, dict) else ["preprocessing"]
    return checked_value(raw, kept, parts)


def stored_preprocessing(checked: Any) -> Dict[str, Any]:
    """The stored form of a checked preprocessing section: the image key and the steps asfda builds."""
    items = enabled(transform_list(checked, "preprocessing"))
    key = "image"
    for item in items:
        if isinstance(item, dict) and item.get("keys") is not None:
            keys = item["keys"]
            key = str(keys if isinstance(keys, str) else list(keys)[0])
            break
    steps = [item for item in items if not (isinstance(item, dict) and step_name(item) in SKIPPED_STEPS)]
    for i, item in enumerate(steps):
        if not isinstance(item, dict) or "_target_" not in item:
            raise UnsupportedBundle(
                f"preprocessing step {i} is not a transform (a mapping with _target_): remove it from the bundle's "
                "preprocessing"
            )
    return {"image_key": key, "steps": steps}


def _foreground_crop(step: Any, before: List[Any], names: List[str], key: str, label: bool) -> ForegroundCrop:
    """The crop's box is computed on the image with the intensity steps listed before it; those must act voxel by
    voxel, since asfda normalises after the spatial steps (a volume statistic would change with the crop)."""
    for name in names:
        if name not in POINTWISE_STEPS:
            raise UnsupportedBundle(
                f"preprocessing step {name} before CropForegroundd computes statistics over the whole volume, which "
                "asfda computes after the spatial steps; move it after CropForegroundd in the bundle's preprocessing"
            )
    try:
        return ForegroundCrop(step, before, key, label)
    except ValueError as exc:
        raise UnsupportedBundle(f"preprocessing step CropForeground: {exc}; crop on the image") from None


def _assemble(built: List[Tuple[str, Any]], key: str, label: bool = False) -> BundlePreprocessing:
    """Intensity steps run after the spatial ones whatever their order in the bundle (for the windowing and
    normalisation steps bundles use, this changes values only by interpolation rounding), except those listed
    before a CropForeground: the crop runs them first, as its box and padding depend on them."""
    spatial: List[Any] = [EnsureChannelFirst(channel_dim="no_channel")]
    intensity: List[Any] = []
    names: List[str] = []  # of the intensity steps, in order
    for name, step in built:
        if name in SPATIAL_STEPS:
            spatial.append(_as_array_step(step, name, key))
        elif name == CROP_STEP:
            spatial.append(_foreground_crop(step, intensity, names, key, label))
            intensity, names = [], []  # the crop runs them on the image, in the bundle's order
        elif type(step).__module__.startswith(_INTENSITY_MODULE):
            intensity.append(_as_array_step(step, name, key))
            names.append(name)
        else:
            written = f"{name}d" if isinstance(step, MapTransform) else name
            why = _CONTENT_DEPENDENT.get(name, "")
            raise UnsupportedBundle(
                f"preprocessing step {name} is not supported{why} (asfda replays "
                f"{', '.join(sorted(SPATIAL_STEPS | {CROP_STEP}))} and intensity steps, and loads and types volumes "
                "itself); "
                f"remove {written} from the bundle's preprocessing"
            )
    return BundlePreprocessing(Compose(spatial), Compose(intensity), key, [name for name, _ in built])


def _built_quietly(make: Callable[[], Any], name: str) -> Any:
    try:
        with warnings.catch_warnings():  # bundles written before MONAI changed Orientation's default labels
            warnings.filterwarnings("ignore", message=".*Orientationd?.__init__:labels", category=FutureWarning)
            return make()
    except UnsupportedBundle:
        raise
    except Exception as exc:
        raise UnsupportedBundle(f"preprocessing step {name} cannot be built: {whole_cause(exc, name)}") from exc


def safe_preprocessing(stored: Dict[str, Any], label: bool = False) -> BundlePreprocessing:
    """Build the stored steps without a parser. For labels, interpolating steps use nearest neighbour."""
    built = []
    for i, item in enumerate(stored["steps"]):
        name = step_name(item)
        node = _with_nearest(item) if label and name in SPATIAL_STEPS else item
        built.append((name, _built_quietly(lambda node=node, i=i: build(node, f"preprocessing.{i}"), name)))
    return _assemble(built, str(stored["image_key"]), label)


def trusted_preprocessing(bundle_root: Path, label: bool = False) -> BundlePreprocessing:
    """MONAI's parser builds the steps (the user passed --trust-bundle-code): expressions are evaluated."""
    parser = bundle_parser(bundle_root)
    if "preprocessing" not in parser:
        raise UnsupportedBundle("the bundle's inference config has no 'preprocessing'")
    node = parser["preprocessing"]
    list_id = "preprocessing#transforms" if isinstance(node, dict) else "preprocessing"
    if isinstance(node, dict) and isinstance(node.get("transforms"), str) and node["transforms"].startswith("@"):
        list_id, node = node["transforms"][1:], parser[node["transforms"][1:]]  # one reference, as bundles write it
    transforms = transform_list(node, "preprocessing")
    indices = [i for i, item in enumerate(transforms) if enabled([item])]
    key = "image"
    for i in indices:
        if isinstance(transforms[i], dict) and transforms[i].get("keys") is not None:
            resolved = parser.get_parsed_content(f"{list_id}#{i}#keys")
            key = resolved if isinstance(resolved, str) else list(resolved)[0]
            break
    built = []
    for i in indices:
        name = step_name(transforms[i])
        if name in SKIPPED_STEPS:
            continue
        if label and name in SPATIAL_STEPS and isinstance(transforms[i], dict):
            parser[f"{list_id}#{i}"] = _with_nearest(transforms[i])
        with importable(bundle_root):  # a step may be one of the bundle's own scripts/ classes
            built.append(
                (name, _built_quietly(lambda i=i: parser.get_parsed_content(f"{list_id}#{i}", lazy=False), name))
            )
    return _assemble(built, key, label)


def _with_nearest(item: Dict[str, Any]) -> Dict[str, Any]:
    """The same step with its interpolation mode set to nearest (labels must keep their values)."""
    item = copy.deepcopy(item)
    try:
        cls = resolve_target(item["_target_"], "preprocessing step")
    except UnsupportedBundle:  # a trusted bundle's own class: MONAI's parser decides what it is
        return item
    if "mode" in inspect.signature(cls.__init__).parameters:
        item["mode"] = "nearest"
    return item


@functools.lru_cache(maxsize=16)
def _cached_safe(stored_json: str, label: bool) -> BundlePreprocessing:
    return safe_preprocessing(json.loads(stored_json), label)


@functools.lru_cache(maxsize=16)
def _cached_from_folder(bundle_root: str, trusted: bool, label: bool, _changed: int) -> BundlePreprocessing:
    if trusted:
        return trusted_preprocessing(Path(bundle_root), label)
    # A version imported before the stored form existed: its configs are checked, then built without a parser.
    raw = RawBundle.read(Path(bundle_root))
    return safe_preprocessing(stored_preprocessing(checked_preprocessing(raw)), label)


def bundle_preprocessing(config: ModelConfig, label: bool = False) -> BundlePreprocessing:
    """The version's preprocessing, built once per process (keyed by what defines it)."""
    if config.bundle_preprocessing is not None:
        return _cached_safe(json.dumps(config.bundle_preprocessing, sort_keys=True), label)
    raw_file = config_file(Path(config.bundle_root) / "configs", "inference")
    if raw_file is None:
        raise UnsupportedBundle(f"{config.bundle_root}: the version's bundle has no configs/inference.json (or .yaml)")
    changed = raw_file.stat().st_mtime_ns  # the config's change time in the key catches an edited bundle
    return _cached_from_folder(str(config.bundle_root), config.bundle_code_trusted, label, changed)


def bundle_spatial_transforms(config: ModelConfig, label: bool = False) -> Compose:
    return bundle_preprocessing(config, label).spatial


def bundle_intensity_transform(config: ModelConfig) -> Compose:
    return bundle_preprocessing(config, False).intensity
