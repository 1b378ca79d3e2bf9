"""Tiny MONAI bundles shaped like three Model Zoo bundles, written with random weights (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch
import yaml
from monai.bundle import ConfigParser

CT_AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def _load_steps(extra: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
        *extra,
        {"_target_": "EnsureTyped", "keys": "image", "device": "@device"},
    ]


def _window(a_min: float, a_max: float) -> Dict[str, Any]:
    return {
        "_target_": "ScaleIntensityRanged",
        "keys": "image",
        "a_min": a_min,
        "a_max": a_max,
        "b_min": 0.0,
        "b_max": 1.0,
        "clip": True,
    }


def _postprocessing() -> Dict[str, Any]:
    return {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"},
        ],
    }


def _inferer(roi, overlap: float, mode: str = "gaussian", padding: str = "constant") -> Dict[str, Any]:
    return {
        "_target_": "SlidingWindowInferer",
        "roi_size": roi if isinstance(roi, list) else [roi, roi, roi],
        "sw_batch_size": 1,
        "overlap": overlap,
        "mode": mode,
        "padding_mode": padding,
    }


def spleen_like() -> Dict[str, Any]:
    """spleen_ct_segmentation: UNet, batch norm, 2 residual units, 1.5x1.5x2 mm, window -57..164, 2 labels."""
    return {
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [4, 8, 16],
            "strides": [2, 2],
            "num_res_units": 2,
            "norm": "batch",
        },
        "preprocessing": {"_target_": "Compose", "transforms": _load_steps([_window(-57, 164)])},
        "inferer": _inferer(16, 0.5),
        "channel_def": {"0": "background", "1": "spleen"},
    }


BTCV_LABELS = [
    "background",
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "IVC",
    "portal and splenic veins",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
]


def swin_like() -> Dict[str, Any]:
    """swin_unetr_btcv_segmentation: SwinUNETR, 14 labels, window -175..250, overlap 0.5 with constant blending.
    Feature size 48, depths 2 and windows of 7 there; 12, 1 and 4 here, on a 64x32x32 patch (the smallest
    whose deepest instance norm sees more than one voxel), so a CPU pass takes well under a second."""
    return {
        "network_def": {
            "_target_": "SwinUNETR",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 14,
            "feature_size": 12,
            "depths": [1, 1, 1, 1],
            "window_size": 4,
            "use_checkpoint": False,
        },
        "preprocessing": {"_target_": "Compose", "transforms": _load_steps([_window(-175, 250)])},
        "inferer": _inferer([64, 32, 32], 0.5, mode="constant"),
        "channel_def": {str(i): name for i, name in enumerate(BTCV_LABELS)},
    }


def wholebody_like() -> Dict[str, Any]:
    """wholeBody_ct_segmentation: SegResNet with group norm, 105 labels, non-zero normalisation scaled to
    -1..1, replicate padding."""
    return {
        "network_def": {
            "_target_": "SegResNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 105,
            "init_filters": 8,
            "blocks_down": [1, 2, 2],
            "blocks_up": [1, 1],
            "norm": ["group", {"num_groups": 4}],
        },
        "preprocessing": {
            "_target_": "Compose",
            "transforms": _load_steps(
                [
                    {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True},
                    {"_target_": "ScaleIntensityd", "keys": "image", "minv": -1.0, "maxv": 1.0},
                ]
            ),
        },
        "inferer": _inferer(16, 0.25, padding="replicate"),
        "channel_def": {"0": "background", **{str(i): f"structure_{i}" for i in range(1, 105)}},
    }


PEDIATRIC_LABELS = {"0": "background", "1": "liver", "2": "spleen", "3": "pancreas"}


def pediatric_like() -> Dict[str, Any]:
    """pediatric_abdominal_ct_segmentation: YAML configs, a DynUNet whose weights file is named by `modelname`
    (dynunet_FT.pt), and its labels under the output's `label_def` rather than `channel_def`."""
    return {
        "network_def": {
            "_target_": "DynUNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 4,
            "kernel_size": [3, 3, 3],
            "strides": [1, 2, 2],
            "upsample_kernel_size": [2, 2],
            "filters": [4, 8, 16],
            "norm_name": "instance",
        },
        "modelname": "dynunet_FT.pt",
        "preprocessing": {"_target_": "Compose", "transforms": _load_steps([_window(-250, 400)])},
        "inferer": _inferer(16, 0.25),
        "label_def": PEDIATRIC_LABELS,
    }


def write_config(path: Path, data: Dict[str, Any]) -> Path:
    """JSON or YAML by the file's suffix, as the Model Zoo ships both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False) if path.suffix in (".yaml", ".yml") else json.dumps(data))
    return path


def edit_inference(bundle: Path, change: Callable[[Dict[str, Any]], None]) -> Path:
    """Apply `change` to the bundle's configs/inference.json in place."""
    path = bundle / "configs" / "inference.json"
    inference = json.loads(path.read_text())
    change(inference)
    return write_config(path, inference)


def write_bundle(
    folder: Path, shape: Dict[str, Any], seed: int = 0, suffix: str = ".json", **overrides: Any
) -> Path:
    """Write configs/inference<suffix>, configs/metadata<suffix> and models/model.pt (random weights)."""
    shape = {**shape, **overrides}
    label_def = shape.pop("label_def", None)
    channel_def = shape.pop("channel_def", None)
    names = {"label_def": label_def} if label_def is not None else {"channel_def": channel_def}
    in_channels = shape.pop("in_channels", 1)
    inference = {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network": "$@network_def.to(@device)",
        "postprocessing": _postprocessing(),
        **shape,
    }
    metadata = {
        "version": "0.1.0",
        "name": folder.name,
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "num_channels": in_channels}},
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(label_def or channel_def),
                    **names,
                }
            },
        },
    }
    write_config(folder / "configs" / f"inference{suffix}", inference)
    write_config(folder / "configs" / f"metadata{suffix}", metadata)
    (folder / "models").mkdir(exist_ok=True)
    parser = ConfigParser(inference)
    torch.manual_seed(seed)
    weights = folder / "models" / str(shape.get("modelname", "model.pt"))
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    return folder


def ct_volume(seed: int, shape=(20, 20, 16), strength: float = 0.0) -> tuple:
    """An abdomen-like CT block: soft tissue around 40 HU, an 'organ' at 120 HU, air corners; `strength`
    moves toward another scanner (darker organ, brighter background, more noise). Returns (label, image)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    center = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    label = (((grid - center) / rng.uniform(3, 5, 3)) ** 2).sum(-1) <= 1.0
    organ, tissue = 120 - 100 * strength, 40 + 60 * strength
    image = np.where(label, organ, tissue) + rng.normal(0, 10 + 30 * strength, shape)
    image[:3, :3, :] = -1000.0
    return label.astype(np.uint8), image.astype(np.float32)


_SCRIPTS_NETWORK = '''"""A bundle's own network, as the UNesT bundles ship theirs under scripts/networks/."""

from monai.networks.nets import UNet


class TinyUNesT(UNet):
    def __init__(self, channels, out_channels=2):
        strides = [2] * (len(channels) - 1)
        super().__init__(3, 1, out_channels, channels=channels, strides=strides, norm="batch")
'''


def write_scripts_bundle(folder: Path) -> Path:
    """A bundle whose network_def is its own scripts.networks class and whose channels come from a file under
    models/ that its config torch.loads (as DiNTS reads models/search_code_*.pt): only --trust-bundle-code."""
    from asfda.models.bundle_code import importable

    (folder / "scripts" / "networks").mkdir(parents=True)
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "networks" / "__init__.py").write_text("")
    (folder / "scripts" / "networks" / "tiny_unest.py").write_text(_SCRIPTS_NETWORK)
    (folder / "models").mkdir()
    torch.save({"channels": [4, 8, 16]}, folder / "models" / "search_code_18590.pt")
    shape = {
        **spleen_like(),
        "arch_ckpt_path": "$@bundle_root + '/models/search_code_18590.pt'",
        "arch_ckpt": "$torch.load(@arch_ckpt_path)",
        "network_def": {"_target_": "scripts.networks.tiny_unest.TinyUNesT", "channels": "$@arch_ckpt['channels']"},
    }
    with importable(folder):  # the bundle's parser needs its root, as MONAI's runner sets it
        write_bundle(folder, shape, bundle_root=str(folder))
    edit_inference(folder, lambda c: c.update(bundle_root="."))  # as published
    return folder
