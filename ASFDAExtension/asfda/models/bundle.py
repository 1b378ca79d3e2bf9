"""Read a MONAI bundle (configs/inference.json, configs/metadata.json, models/model.pt) into a ModelConfig and a
network, refusing with a one-line reason whatever asfda cannot honour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from asfda.models.bundle_build import build, network_node, stored_network
from asfda.models.bundle_code import importable, referenced_files
from asfda.models.bundle_failures import whole_cause
from asfda.models.bundle_labels import bundle_labels
from asfda.models.bundle_postprocessing import bundle_settings
from asfda.models.bundle_safety import (
    RawBundle,
    UnsupportedBundle,
    UntrustedBundleCode,
    checked_inferer,
    checked_section,
)
from asfda.models.bundle_transforms import (
    bundle_parser,
    bundle_preprocessing,
    checked_preprocessing,
    step_name,
    stored_preprocessing,
)
from asfda.models.bundle_weights import BundleWeights, choose_weights
from asfda.models.config import BUNDLE_FOLDER, IntensityConfig, ModelConfig
from asfda.models.weights import LoadReport, load_weights

_NNUNET_MARKERS = ("plans.json", "nnUNetPlans.json", "dataset_fingerprint.json")


@dataclass
class BundleSpec:
    config: ModelConfig  # bundle_root points at the bundle folder it was read from
    network: nn.Module  # built from network_def, weights not loaded yet
    preprocessing: List[str] = field(default_factory=list)
    name: str = ""
    monai_version: str = ""  # the MONAI version the bundle says it was written for, when it says
    weights: Optional[BundleWeights] = None  # the weights file chosen (--weights, the config's, or the default)
    label_source: str = ""  # which metadata keys named the labels
    settings: List[str] = field(default_factory=list)  # honoured / changed / dropped, each with its reason


def _refuse_other_layouts(folder: Path) -> None:
    if not folder.is_dir():
        raise UnsupportedBundle(f"{folder}: not a folder")
    if (
        any((folder / m).exists() for m in _NNUNET_MARKERS)
        or any(folder.glob("*/fold_*"))
        or any(folder.glob("fold_*"))
    ):
        raise UnsupportedBundle(
            f"{folder}: an nnU-Net results folder, not a MONAI bundle; import it with --nnunet {folder} "
            "[--fold N|all] [--checkpoint final|best]"
        )
    RawBundle.read(folder)  # JSON or YAML configs present and readable


def _single(entries: Any, what: str) -> Dict[str, Any]:
    if not isinstance(entries, dict) or not entries:
        raise UnsupportedBundle(f"metadata.json has no network_data_format {what}")
    if len(entries) != 1:
        raise UnsupportedBundle(f"the bundle has {len(entries)} {what} ({', '.join(entries)}); asfda needs one")
    return next(iter(entries.values()))


def _check_inferer_name(raw: RawBundle) -> None:
    node = raw.section("inferer")
    name = (step_name(node) or "not a transform") if node is not None else "none"
    if name != "SlidingWindowInferer":
        raise UnsupportedBundle(
            f"the bundle's inferer is {name}; asfda needs a SlidingWindowInferer (it trains and scores on patches)"
        )


def _inferer_settings(inferer: object) -> Dict[str, Any]:
    if not isinstance(inferer, SlidingWindowInferer):
        raise UnsupportedBundle("the bundle's inferer did not build a SlidingWindowInferer")
    roi = [int(s) for s in inferer.roi_size] if not isinstance(inferer.roi_size, int) else [inferer.roi_size] * 3
    if len(roi) != 3 or min(roi) < 8:
        raise UnsupportedBundle(f"the bundle's inferer roi_size {roi} is not three sizes >= 8")
    overlap = inferer.overlap
    if not isinstance(overlap, (int, float)):
        if len(set(overlap)) != 1:
            raise UnsupportedBundle(f"the bundle's inferer overlap {list(overlap)} differs per axis; asfda needs one")
        overlap = list(overlap)[0]
    return {
        "roi_size": roi,
        "sw_batch_size": int(inferer.sw_batch_size),
        "sw_overlap": float(overlap),
        "sw_mode": getattr(inferer.mode, "value", str(inferer.mode)),
        "sw_padding_mode": getattr(inferer.padding_mode, "value", str(inferer.padding_mode)),
    }


def _as_module(network: object) -> nn.Module:
    if not isinstance(network, nn.Module):
        raise UnsupportedBundle("the bundle's network_def is not a torch module")
    return network


def _parsed_network(bundle_root: Path) -> nn.Module:
    """MONAI's parser builds network_def: only for a bundle imported with --trust-bundle-code."""
    parser = bundle_parser(bundle_root)
    if "network_def" not in parser:
        raise UnsupportedBundle("the bundle's inference config has no 'network_def'")
    try:
        with importable(bundle_root):
            return _as_module(parser.get_parsed_content("network_def"))
    except UnsupportedBundle:
        raise
    except Exception as exc:
        raise UnsupportedBundle(f"the bundle's network_def cannot be built: {whole_cause(exc)}") from exc


def bundle_network(config: ModelConfig) -> nn.Module:
    """The version's network without a config parser: from the stored class and arguments, or (a version
    imported before they were stored) from its checked configs; MONAI's parser only for a trusted bundle."""
    if config.bundle_network is not None:
        return _as_module(build(network_node(config.bundle_network), "bundle_network"))
    if config.bundle_code_trusted:
        return _parsed_network(Path(config.bundle_root))
    return _as_module(build(checked_section(RawBundle.read(Path(config.bundle_root)), "network_def"), "network_def"))


def _check_output_channels(network: nn.Module, config: ModelConfig) -> None:
    network.eval()
    with torch.no_grad():
        try:
            out = network(torch.zeros(1, 1, *config.roi_size))
        except Exception as exc:
            raise UnsupportedBundle(
                f"the network does not run on one 1-channel patch of {config.roi_size}: {whole_cause(exc)}"
            ) from exc
    if not isinstance(out, torch.Tensor):
        raise UnsupportedBundle("the network returns several outputs (deep supervision?); asfda needs one tensor")
    if out.shape[1] != config.out_channels:
        raise UnsupportedBundle(
            f"the network gives {out.shape[1]} output channels but metadata.json defines {config.out_channels}"
        )


def _check_invertible(config: ModelConfig) -> None:
    """Preprocess a small oblique volume and map a channel map back: the grid must come back unchanged."""
    from monai.data import MetaTensor

    from asfda.models.preprocess import prepare_image, to_original_space

    affine = torch.tensor([[0.0, -1.1, 0.0, 5.0], [0.9, 0.0, 0.0, -3.0], [0.0, 0.0, 2.5, 1.0], [0, 0, 0, 1.0]])
    volume = MetaTensor(torch.linspace(-200, 300, 19 * 17 * 13).reshape(19, 17, 13), affine=affine)
    try:
        prepared = prepare_image(volume, config)
        restored = to_original_space(prepared, torch.zeros(2, *prepared.shape[1:]), config)
    except UnsupportedBundle:
        raise
    except Exception as exc:
        raise UnsupportedBundle(
            f"the bundle's preprocessing cannot be inverted onto the image grid: {whole_cause(exc)}"
        ) from exc
    if tuple(restored.shape[1:]) != tuple(volume.shape):
        raise UnsupportedBundle(
            f"the bundle's preprocessing does not invert to the image grid ({tuple(volume.shape)} came back as "
            f"{tuple(restored.shape[1:])})"
        )


def _checked_or_trusted(raw: RawBundle, trust_code: bool) -> Optional[Dict[str, Any]]:
    """The checked sections, or None when they ask for code and the user trusts the bundle."""
    try:
        return {
            "network_def": checked_section(raw, "network_def"),
            "preprocessing": checked_preprocessing(raw),
            "inferer": checked_inferer(raw),
        }
    except UntrustedBundleCode:
        if not trust_code:
            raise
        return None


def read_bundle(folder: Path, trust_code: bool = False, weights: Optional[Path] = None) -> BundleSpec:
    """Everything asfda needs from a bundle, checked; the weights are loaded separately (load_bundle).

    Nothing of the bundle runs unless `trust_code` is set and its configs ask for code: the sections asfda
    builds are checked first (asfda.models.bundle_safety) and built from plain values."""
    folder = Path(folder).resolve()
    _refuse_other_layouts(folder)
    raw = RawBundle.read(folder)
    chosen_weights = choose_weights(raw, weights, trust_code)
    meta = raw.config["_meta_"]
    formats = meta.get("network_data_format", {}) if isinstance(meta, dict) else {}
    image = _single(formats.get("inputs"), "inputs")
    channels = int(image.get("num_channels", 1))
    if channels != 1:
        raise UnsupportedBundle(f"the bundle takes {channels} input channels; asfda feeds one image per case")
    labels, label_source = bundle_labels(_single(formats.get("outputs"), "outputs"), meta)
    settings = bundle_settings(raw)
    _check_inferer_name(raw)
    checked = _checked_or_trusted(raw, trust_code)
    stored: Dict[str, Any] = {
        "bundle_code_trusted": checked is None,
        "bundle_files": referenced_files(raw, chosen_weights.files()),
        "invert_probabilities": settings.invert_probabilities,
    }
    if checked is None:
        network = _parsed_network(folder)
        try:
            with importable(folder):
                inferer = bundle_parser(folder).get_parsed_content("inferer")
        except Exception as exc:
            raise UnsupportedBundle(f"the bundle's inferer cannot be built: {whole_cause(exc)}") from exc
    else:
        network = _as_module(build(checked["network_def"], "network_def"))
        inferer = build(checked["inferer"], "inferer")
        stored["bundle_network"] = stored_network(checked["network_def"])
        stored["bundle_preprocessing"] = stored_preprocessing(checked["preprocessing"])
    config = ModelConfig(
        network=type(network).__name__,
        labels=labels,
        intensity=IntensityConfig(mode="none"),
        bundle=BUNDLE_FOLDER,
        **_inferer_settings(inferer),
        **stored,
    ).validate()
    config.bundle_root = folder
    steps = bundle_preprocessing(config).steps
    bundle_preprocessing(config, label=True)
    _check_invertible(config)
    _check_output_channels(network, config)
    name = str(meta.get("name", folder.name)) if isinstance(meta, dict) else folder.name
    version = str(meta.get("monai_version", "")) if isinstance(meta, dict) else ""
    return BundleSpec(config, network, steps, name, version, chosen_weights, label_source, settings.notes)


def load_bundle(
    folder: Path, trust_code: bool = False, weights: Optional[Path] = None
) -> Tuple[BundleSpec, LoadReport]:
    """Read and check a bundle, then load its weights file (asfda.models.bundle_weights) strictly
    (missing/unexpected/shape report)."""
    spec = read_bundle(folder, trust_code, weights)
    assert spec.weights is not None  # read_bundle always chooses one
    report = load_weights(spec.network, spec.weights.path)
    return spec, report
