"""A tiny nnU-Net v2 results folder written with random weights (nothing downloaded), in nnU-Net's published
layout: dataset.json, plans.json, fold_N/checkpoint_final.pth with the keys nnUNetTrainer saves."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

TRAINER_DIR = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def dataset_json(labels: Optional[Dict[str, Any]] = None, channels: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    return {
        "channel_names": channels or {"0": "CT"},
        "labels": labels or {"background": 0, "organ": 1, "vessel": 2},
        "numTraining": 4,
        "file_ending": ".nii.gz",
    }


def plans_json(
    normalization: str = "CTNormalization", mask_for_norm: bool = False, network: str = "PlainConvUNet"
) -> Dict[str, Any]:
    """A 3-stage PlainConvUNet (or ResidualEncoderUNet, as nnU-Net's ResEnc presets plan it), anisotropic target
    spacing, a non-identity transpose (axes in reader order z, y, x transposed by [0, 2, 1]), and the foreground
    intensity properties CT normalisation clips and z-scores with."""
    plans = {
        "dataset_name": "Dataset900_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 0.8, 0.8],
        "original_median_shape_after_transp": [20, 40, 40],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 2, 1],
        "transpose_backward": [0, 2, 1],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [16, 32, 32],
                "median_image_size_in_voxels": [20, 40, 40],
                "spacing": [3.0, 0.8, 0.8],
                "normalization_schemes": [normalization],
                "use_mask_for_norm": [mask_for_norm],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": 3,
                        "features_per_stage": [4, 8, 16],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                        "n_conv_per_stage": [1, 1, 1],
                        "n_conv_per_stage_decoder": [1, 1],
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            },
            "3d_lowres": {
                "inherits_from": "3d_fullres",
                "spacing": [4.0, 1.6, 1.6],
                "next_stage": "3d_cascade_fullres",
            },
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
            "2d": {"inherits_from": "3d_fullres", "patch_size": [32, 32], "spacing": [0.8, 0.8]},
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 400.0,
                "mean": 60.0,
                "median": 55.0,
                "min": -300.0,
                "percentile_00_5": -150.0,
                "percentile_99_5": 250.0,
                "std": 80.0,
            }
        },
    }
    if network == "ResidualEncoderUNet":
        arch = plans["configurations"]["3d_fullres"]["architecture"]
        arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        arch["arch_kwargs"]["n_blocks_per_stage"] = arch["arch_kwargs"].pop("n_conv_per_stage")
    return plans


def old_format(plans: Dict[str, Any]) -> Dict[str, Any]:
    """The same plans as nnU-Net before 2.3 wrote them (UNet_class_name and the U-Net's numbers, no
    `architecture`), which its ConfigurationManager still converts."""
    plans = copy.deepcopy(plans)
    conf = plans["configurations"]["3d_fullres"]
    arch = conf.pop("architecture")
    kwargs = arch["arch_kwargs"]
    conf.update(
        UNet_class_name=arch["network_class_name"].rsplit(".", 1)[-1],
        UNet_base_num_features=kwargs["features_per_stage"][0],
        unet_max_num_features=kwargs["features_per_stage"][-1],
        n_conv_per_stage_encoder=kwargs.get("n_conv_per_stage", kwargs.get("n_blocks_per_stage")),
        n_conv_per_stage_decoder=kwargs["n_conv_per_stage_decoder"],
        num_pool_per_axis=[2, 2, 1],
        pool_op_kernel_sizes=kwargs["strides"],
        conv_kernel_sizes=kwargs["kernel_sizes"],
    )
    return plans


def _network(plans: Dict[str, Any], dataset: Dict[str, Any], seed: int) -> torch.nn.Module:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        len(dataset["labels"]),
        allow_init=True,
        deep_supervision=True,
    )
    with torch.no_grad():  # random affine norms: the folds differ and no class dominates everywhere
        for module in network.modules():
            if isinstance(module, torch.nn.InstanceNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        # Shift the last segmentation layer's biases so each class wins on about a third of a smooth input.
        patch = plans["configurations"]["3d_fullres"]["patch_size"]
        x = torch.nn.functional.avg_pool3d(torch.randn(1, 1, *patch), 5, stride=1, padding=2) * 5
        network.eval()
        logits = network(x)[0][0].flatten(1)
        seg = network.decoder.seg_layers[-1]
        seg.bias -= logits.median(dim=1).values - logits.median(dim=1).values.mean()
    return network


def write_results_folder(
    root: Path,
    folds: Sequence[int] = (0,),
    plans: Optional[Dict[str, Any]] = None,
    dataset: Optional[Dict[str, Any]] = None,
    trainer: str = "nnUNetTrainer",
    configuration: str = "3d_fullres",
    mirror_axes=(0, 1, 2),
    checkpoint: str = "checkpoint_final.pth",
    written_as_before_2_3: bool = False,
) -> Path:
    """root/Dataset900_Tiny/<trainer>__nnUNetPlans__<configuration>/ with one checkpoint per fold."""
    plans = copy.deepcopy(plans or plans_json())
    on_disk = old_format(plans) if written_as_before_2_3 else plans
    dataset = dataset or dataset_json()
    folder = Path(root) / "Dataset900_Tiny" / f"{trainer}__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(on_disk, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for fold in folds:
        network = _network(plans, dataset, seed=fold)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(
            {
                "network_weights": network.state_dict(),
                "optimizer_state": {},
                "grad_scaler_state": None,
                "logging": {"mean_fg_dice": [np.float64(0.5)], "epoch_end_timestamps": [1.0]},
                "_best_ema": np.float64(0.5),
                "current_epoch": 1000,
                "init_args": {
                    "plans": on_disk,
                    "configuration": configuration,
                    "fold": fold,
                    "dataset_json": dataset,
                    "device": torch.device("cpu"),
                },
                "trainer_name": trainer,
                "inference_allowed_mirroring_axes": mirror_axes,
            },
            folder / f"fold_{fold}" / checkpoint,
        )
    return folder


def nnunet_label_map(folder: Path, image_path: Path, out_dir: Path, folds: Sequence, checkpoint: str) -> np.ndarray:
    """nnU-Net's own predictor on one file (sequential, as `nnUNetv2_predict` with one process), read back in the
    file's voxel order."""
    import nibabel as nib
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds), checkpoint_name=checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential(
        [[str(image_path)]], [str(out_dir / "case")], save_probabilities=False, overwrite=True
    )
    return np.asarray(nib.load(str(out_dir / "case.nii.gz")).dataobj).astype(np.uint8)


def oblique_affine(spacing=(0.7, 0.9, 2.5)) -> np.ndarray:
    """A rotated (orthonormal directions, as ITK requires) anisotropic voxel-to-RAS affine."""
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.2, 0.15]).as_matrix() * np.asarray(spacing)
    affine[:3, 3] = [5.0, -3.0, 2.0]
    return affine


def ct_like(seed: int, shape=(40, 36, 20)) -> np.ndarray:
    """Smooth intensities around the plans' foreground range, with a zero margin nnU-Net crops away."""
    from scipy.ndimage import gaussian_filter

    image = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2) * 3000 + 50
    image[:4] = 0
    image[:, -3:] = 0
    return image.astype(np.float32)
