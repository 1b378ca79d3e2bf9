"""A bundle's post-processing and the settings around its own pipeline, read as written (never built): what asfda
honours, changes or drops, each with its reason for the import summary; what it cannot honour is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from asfda.models.bundle_safety import RawBundle, UnsupportedBundle, UntrustedBundleCode, checked_value
from asfda.models.bundle_transforms import enabled, step_name, transform_list

# Post-processing steps asfda reproduces itself (softmax, argmax, inverse of the preprocessing, saving) or that
# change nothing a label map depends on.
_UNDERSTOOD = {
    "Activations",
    "AsDiscrete",
    "Invert",
    "SaveImage",
    "EnsureType",
    "ToTensor",
    "ToNumpy",
    "ToDevice",
    "CopyItems",
    "DeleteItems",
    "SqueezeDim",
    "CastToType",
    "Identity",
}


@dataclass
class BundleSettings:
    invert_probabilities: bool = False  # Invertd(nearest_interp=false) before the argmax
    notes: List[str] = field(default_factory=list)  # "honoured: ...", "changed: ...", "dropped: ..."


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


def _plain(raw: RawBundle, value: Any, parts: List[str]) -> Optional[Any]:
    """A setting's plain value (references and literal expressions computed), or None when only code computes it."""
    try:
        return checked_value(raw, value, parts)
    except UntrustedBundleCode:
        return None


def _refuse(name: str, args: dict) -> None:
    if name == "Activations" and _truthy(args.get("sigmoid")):
        raise UnsupportedBundle(
            "the bundle's outputs are sigmoid (multi-label); asfda needs mutually exclusive softmax labels"
        )
    if name == "AsDiscrete" and (args.get("threshold") is not None or _truthy(args.get("threshold_values"))):
        raise UnsupportedBundle(
            "the bundle thresholds its outputs (multi-label); asfda needs mutually exclusive softmax labels"
        )
    if name not in _UNDERSTOOD:
        raise UnsupportedBundle(
            f"post-processing step {name} cannot be reproduced or inverted by asfda; remove it from the bundle's "
            "postprocessing (asfda applies softmax, argmax and the inverse of the preprocessing itself)"
        )


def _inversion(raw: RawBundle, items: List[Any], settings: BundleSettings) -> None:
    names = [step_name(item) for item in items]
    if "Invert" not in names:
        settings.notes.append(
            "changed: the postprocessing has no Invertd; asfda maps the labels back onto the image grid "
            "(argmax in network space, then nearest neighbour)"
        )
        return
    at = names.index("Invert")
    argmax_at = next(
        (i for i, (n, item) in enumerate(zip(names, items)) if n == "AsDiscrete" and _truthy(item.get("argmax"))),
        len(items),
    )
    value = items[at].get("nearest_interp", True) if isinstance(items[at], dict) else True
    nearest = _plain(raw, value, ["postprocessing", "transforms", str(at), "nearest_interp"])
    if nearest is None:
        settings.notes.append(
            "changed: Invertd's nearest_interp is computed by code asfda does not run; argmax in network space, "
            "then nearest neighbour back"
        )
    elif _truthy(nearest) or nearest is True:
        settings.notes.append("honoured: Invertd(nearest_interp=true): argmax in network space, nearest neighbour back")
    elif argmax_at < at:
        settings.notes.append(
            "changed: Invertd(nearest_interp=false) after the argmax would blend class ids; asfda maps the ids back "
            "with nearest neighbour"
        )
    else:
        settings.invert_probabilities = True
        settings.notes.append(
            "honoured: Invertd(nearest_interp=false): probabilities mapped back with the preprocessing's "
            "interpolation, argmax on the image grid (8 channels at a time: two grids plus 8 channels in memory)"
        )


def _reader_and_amp(raw: RawBundle, settings: BundleSettings) -> None:
    node = raw.section("preprocessing")
    items = raw.follow(node.get("transforms"), "preprocessing") if isinstance(node, dict) else node
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and step_name(item) == "LoadImage" and item.get("reader") is not None:
            reader = item["reader"]
            shown = reader if isinstance(reader, str) else reader.get("_target_", "a reader")
            settings.notes.append(
                f"dropped: LoadImaged(reader={shown}): asfda reads every volume with its own loader (same geometry "
                "and values for NIfTI, NRRD and DICOM series)"
            )
    evaluator = raw.section("evaluator")
    amp = evaluator.get("amp") if isinstance(evaluator, dict) else None
    amp = _plain(raw, amp, ["evaluator", "amp"]) if amp is not None else None
    if amp is not None:
        settings.notes.append(
            f"changed: evaluator amp={str(amp).lower()}: asfda's precision setting decides (auto: bf16 on a GPU "
            "that supports it, fp32 elsewhere)"
        )
    if any(step_name(item) == "SaveImage" for item in _postprocessing_items(raw)):
        settings.notes.append("dropped: SaveImaged: asfda writes labels/prediction/CASE.nii.gz itself")


def _postprocessing_items(raw: RawBundle) -> List[Any]:
    node = raw.section("postprocessing")
    if node is None:
        return []
    if isinstance(node, dict):
        node = {**node, "transforms": raw.follow(node.get("transforms"), "postprocessing.transforms")}
    return enabled([raw.follow(item, "postprocessing") for item in transform_list(node, "postprocessing")])


def bundle_settings(raw: RawBundle) -> BundleSettings:
    """Refuses what cannot be honoured; otherwise the inversion asfda uses and a note per setting it read."""
    items = _postprocessing_items(raw)
    for item in items:
        _refuse(step_name(item), item if isinstance(item, dict) else {})
    settings = BundleSettings()
    _inversion(raw, [item if isinstance(item, dict) else {} for item in items], settings)
    _reader_and_amp(raw, settings)
    return settings
