"""An nnU-Net v2 trained-model folder read and checked: dataset.json, plans.json and the folds' checkpoints.

Every refusal is one line (`UnsupportedNnUNet`) naming the file or key and what to do. Nothing here builds a
network or imports nnunetv2: the checks run on the JSON and on the checkpoints' plain contents.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from asfda.core.errors import ConfigError

# What `scripts/setup.sh nnunet` installs (scripts/nnunet-requirements.txt, without their dependencies: nnunetv2's
# own list would replace the CPU torch).
NNUNET_PACKAGES = ("nnunetv2", "dynamic_network_architectures", "acvl_utils", "batchgenerators", "SimpleITK", "blosc2")
INSTALL_HINT = "install it with `scripts/setup.sh nnunet` (nnunetv2 and dynamic-network-architectures, no new torch)"
CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
# Trainers whose network is the plans' network, built by nnU-Net's default build_network_architecture: the plain
# trainer and its variants that change only the schedule or the mirroring (TotalSegmentator's are of this kind).
_TRAINER = re.compile(r"^nnUNetTrainer(_\d+epochs)?(_?NoMirroring)?$")
_NETWORK_MODULES = (
    "dynamic_network_architectures.architectures.unet.",
    "dynamic_network_architectures.architectures.residual_unet.",
)
_OLD_NETWORKS = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
}
_SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")  # both give the file's voxel grid, axes reversed (z, y, x)
_PREPROCESSOR = "DefaultPreprocessor"


class UnsupportedNnUNet(ConfigError):
    """An nnU-Net folder asfda cannot honour; the message is one line with what to do."""


@dataclass
class NnUNetFolder:
    """What the import takes from a results folder; `stored` is what the version's config.json keeps."""

    folder: Path
    plans: Dict[str, Any]
    dataset: Dict[str, Any]
    configuration: str
    trainer: str
    folds: List[str]
    checkpoint: str
    mirror_axes: Optional[List[int]]
    weights: List[Dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def stored(self) -> Dict[str, Any]:
        return {
            "plans": self.plans,
            "dataset": self.dataset,
            "configuration": self.configuration,
            "trainer": self.trainer,
            "folds": self.folds,
            "checkpoint": self.checkpoint,
            "mirror_axes": self.mirror_axes,
            "step_size": 0.5,
        }


def nnunet_missing() -> Optional[str]:
    """The first package the nnU-Net path needs that is not installed, or None."""
    for name in NNUNET_PACKAGES:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def require_nnunet() -> None:
    missing = nnunet_missing()
    if missing is not None:
        raise UnsupportedNnUNet(f"nnU-Net models need the package {missing!r}, which is not installed: {INSTALL_HINT}")


def _read_json(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise UnsupportedNnUNet(
            f"not an nnU-Net results folder: {path.name} missing in {path.parent} ({what}); give the folder "
            "that holds dataset.json, plans.json and fold_*/ "
            "(e.g. .../Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnsupportedNnUNet(f"{path.name}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnsupportedNnUNet(f"{path.name}: expected a JSON object")
    return data


def _fold_names(folder: Path, fold: str, checkpoint: str) -> List[str]:
    if fold != "all":
        if not re.fullmatch(r"\d+", fold):
            raise UnsupportedNnUNet(f"--fold {fold!r}: give a fold number (0, 1, ...) or 'all'")
        if not (folder / f"fold_{fold}").is_dir():
            found = sorted(p.name for p in folder.glob("fold_*") if p.is_dir())
            raise UnsupportedNnUNet(f"fold_{fold} missing in {folder}; it has {', '.join(found) or 'no fold_* folder'}")
        return [fold]
    folds = sorted(
        (p.name[len("fold_") :] for p in folder.glob("fold_*") if p.is_dir()),
        key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f),
    )
    if not folds:
        raise UnsupportedNnUNet(f"no fold_* folder in {folder}: nothing trained to import")
    return folds


def _load_checkpoint(path: Path) -> Dict[str, Any]:
    """nnU-Net saves a pickle. Loaded with torch's weights-only unpickler (tensors, containers, numbers; numpy
    scalars and torch.device as nnU-Net's own logs hold them), so a checkpoint cannot run code."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core; checkpoints name either
    scalar = core.multiarray.scalar
    safe: List[Any] = [np.dtype, torch.device, scalar, (scalar, "numpy.core.multiarray.scalar")]
    safe += [type(np.dtype(c)) for c in "bhilqefdg?BHILQ"]
    try:
        with torch.serialization.safe_globals(safe):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        cause = " ".join(str(exc).split())[:300]
        raise UnsupportedNnUNet(
            f"{path.parent.name}/{path.name}: cannot be read without running code ({cause}); re-save it with "
            "torch.save({'network_weights': ..., 'trainer_name': ..., 'init_args': ...}) of plain values"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise UnsupportedNnUNet(f"{path.parent.name}/{path.name}: not an nnU-Net checkpoint (no network_weights)")
    return checkpoint


def _configuration(plans: Dict[str, Any], name: str, seen: tuple = ()) -> Dict[str, Any]:
    """The configuration with `inherits_from` resolved, as nnU-Net's PlansManager does."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or name not in configurations:
        raise UnsupportedNnUNet(f"plans.json has no configuration {name!r} (the checkpoint's)")
    if name in seen:
        raise UnsupportedNnUNet(f"plans.json configurations inherit in a circle: {' -> '.join((*seen, name))}")
    own = dict(configurations[name])
    parent = own.pop("inherits_from", None)
    return {**_configuration(plans, parent, (*seen, name)), **own} if parent else own


def network_class_name(conf: Dict[str, Any]) -> str:
    """The plans' network class path; plans of nnU-Net before 2.3 name it `UNet_class_name` (their
    ConfigurationManager converts them, as the import does)."""
    arch = conf.get("architecture")
    if arch is None and conf.get("UNet_class_name") in _OLD_NETWORKS:
        return _OLD_NETWORKS[conf["UNet_class_name"]]
    return str((arch or {}).get("network_class_name", ""))


def check_configuration(plans: Dict[str, Any], dataset: Dict[str, Any], name: str) -> Dict[str, Any]:
    """Refuse what asfda cannot reproduce; the resolved configuration."""
    conf = _configuration(plans, name)
    if conf.get("previous_stage"):
        raise UnsupportedNnUNet(
            f"configuration {name!r} is a cascade stage (it needs {conf['previous_stage']!r}'s segmentation as input); "
            "import the 3d_fullres or 3d_lowres model instead"
        )
    patch = conf.get("patch_size")
    if not isinstance(patch, list) or len(patch) != 3:
        raise UnsupportedNnUNet(
            f"configuration {name!r} is {len(patch) if isinstance(patch, list) else '?'}D: asfda predicts 3D patches; "
            "import a 3d_fullres or 3d_lowres model"
        )
    if conf.get("preprocessor_name", _PREPROCESSOR) != _PREPROCESSOR:
        raise UnsupportedNnUNet(
            f"configuration {name!r}: preprocessor {conf['preprocessor_name']!r} is not nnU-Net's {_PREPROCESSOR}"
        )
    network = network_class_name(conf)
    if not network.startswith(_NETWORK_MODULES):
        raise UnsupportedNnUNet(
            f"plans.json network {network or '(none)'!r} is not one asfda builds (the U-Nets of "
            "dynamic_network_architectures: PlainConvUNet, ResidualEncoderUNet)"
        )
    reader = plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in _SUPPORTED_READERS:
        raise UnsupportedNnUNet(
            f"plans.json image_reader_writer {reader!r}: asfda reads NIfTI/NRRD/DICOM on the file's own voxel grid "
            f"as {' and '.join(_SUPPORTED_READERS)} do; a reader that reorients cannot be reproduced"
        )
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or len(channels) != 1:
        raise UnsupportedNnUNet(
            f"dataset.json channel_names {channels!r}: asfda reads one volume per case, the model needs "
            f"{len(channels) if isinstance(channels, dict) else '?'} input channels"
        )
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise UnsupportedNnUNet(
            "dataset.json labels are regions (lists of values, trained with sigmoid outputs): asfda needs one "
            "softmax channel per label"
        )
    if "ignore" in labels:
        raise UnsupportedNnUNet(
            "dataset.json has an 'ignore' label (sparse training): not supported; import a model without it"
        )
    if sorted(labels.values()) != list(range(len(labels))):
        raise UnsupportedNnUNet(f"dataset.json labels {sorted(labels.values())}: values must be 0..C-1")
    return conf


def read_nnunet_folder(folder: Path, fold: str = "all", checkpoint: str = "final") -> NnUNetFolder:
    """Check a results folder and read the folds' weights; UnsupportedNnUNet in one line where it cannot be used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnsupportedNnUNet(f"{folder}: not a folder")
    if checkpoint not in CHECKPOINTS:
        raise UnsupportedNnUNet(f"--checkpoint {checkpoint!r}: one of {', '.join(CHECKPOINTS)}")
    dataset = _read_json(folder / "dataset.json", "labels and channels")
    plans = _read_json(folder / "plans.json", "preprocessing and network")
    folds = _fold_names(folder, str(fold), checkpoint)
    weights, trainer, configuration, mirror_axes = [], None, None, None
    for name in folds:
        path = folder / f"fold_{name}" / CHECKPOINTS[checkpoint]
        if not path.is_file():
            offered = sorted(p.name for p in path.parent.glob("checkpoint_*.pth"))
            raise UnsupportedNnUNet(
                f"fold_{name} has no {path.name}"
                + (
                    f" (it has {', '.join(offered)}: choose with --checkpoint, or one fold with --fold)"
                    if offered
                    else " (training unfinished?); choose the trained folds with --fold"
                )
            )
        ckpt = _load_checkpoint(path)
        init = ckpt.get("init_args") if isinstance(ckpt.get("init_args"), dict) else {}
        if trainer is None:
            trainer = str(ckpt.get("trainer_name", ""))
            configuration = str(init.get("configuration", ""))
            axes = ckpt.get("inference_allowed_mirroring_axes")
            mirror_axes = [int(a) for a in axes] if axes is not None else None
        elif (str(ckpt.get("trainer_name", "")), str(init.get("configuration", ""))) != (trainer, configuration):
            raise UnsupportedNnUNet(
                f"fold_{name} was trained with another trainer or configuration than fold_{folds[0]}"
            )
        weights.append(ckpt["network_weights"])
    if not _TRAINER.match(trainer or ""):
        raise UnsupportedNnUNet(
            f"trainer {trainer!r} may build its own network (not the plans' one); asfda builds nnUNetTrainer's and "
            "its schedule/mirroring variants (nnUNetTrainer_NNNepochs, nnUNetTrainerNoMirroring)"
        )
    check_configuration(plans, dataset, configuration)
    return NnUNetFolder(
        folder, plans, dataset, configuration, trainer, folds, CHECKPOINTS[checkpoint], mirror_axes, weights
    )


def fold_state_dict(weights: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The folds' checkpoints as one state dict of the folds' module (asfda.models.nnunet_network.NnUNetFolds)."""
    return {f"folds.{i}.{key}": value for i, fold in enumerate(weights) for key, value in fold.items()}
