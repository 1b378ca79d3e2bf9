"""nnU-Net's own preprocessing, sliding window and export for an imported nnU-Net model.

The volume asfda loads (file voxel order i, j, k; affine to RAS) is the array nnU-Net's SimpleITK and nibabel
readers give with the axes reversed (k, j, i) and the spacing reversed with them. From there every step is
nnunetv2's: `DefaultPreprocessor.run_case_npy` (transpose_forward, crop to the non-zero box, the plans'
per-channel normalisation, resampling to the target spacing), `nnUNetPredictor.predict_sliding_window_return_logits`
(patch size, step 0.5, Gaussian weighting, mirroring over the checkpoint's axes) and
`convert_predicted_logits_to_segmentation_with_correct_shape` (logits resampled back, argmax, crop undone,
transpose_backward). What preprocessing recorded travels in the prepared image's `meta["nnunet"]`, so labels and
maps go back (and clinician labels come in) through the same box and shapes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings
from typing import Any, Dict, Tuple

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, insert_crop_into_image
from monai.data import MetaTensor
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from asfda.models.config import ModelConfig

META_KEY = "nnunet"


@functools.lru_cache(maxsize=8)
def _managers(stored_json: str) -> Tuple[PlansManager, ConfigurationManager, Dict[str, Any]]:
    stored = json.loads(stored_json)
    plans_manager = PlansManager(stored["plans"])
    return plans_manager, quiet_configuration(plans_manager, stored["configuration"]), stored["dataset"]


def quiet_configuration(plans_manager: PlansManager, name: str) -> ConfigurationManager:
    """nnU-Net's configuration; plans older than nnU-Net 2.3 are converted without its warning at every load (the
    import summary says so once)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected old nnU-Net plans format")
        return plans_manager.get_configuration(name)


def managers(config: ModelConfig) -> Tuple[PlansManager, ConfigurationManager, Dict[str, Any]]:
    """nnU-Net's plans and configuration managers and the dataset.json of a version (cached per settings)."""
    return _managers(json.dumps(config.nnunet, sort_keys=True))


def _reader_order(volume: torch.Tensor) -> np.ndarray:
    """(i, j, k) file order -> (k, j, i), nnU-Net's reader order."""
    return np.ascontiguousarray(np.asarray(volume, dtype=np.float32).transpose(2, 1, 0))


def _file_order(array) -> torch.Tensor:
    """(..., k, j, i) -> (..., i, j, k)."""
    tensor = torch.as_tensor(np.ascontiguousarray(array))
    n = tensor.ndim
    return tensor.permute(*range(n - 3), n - 1, n - 2, n - 3).contiguous()


def _spacing(volume: MetaTensor) -> list:
    """Voxel sizes in nnU-Net's reader order (k, j, i). For NIfTI the header's pixdim, as ITK and nibabel report
    it: the affine's column norms differ in the last float32 digits, and nnU-Net's target shape rounds
    size x spacing / target, so a ratio on .5 (36 x 0.7 / 0.8 = 31.5) would give another shape."""
    meta = getattr(volume, "meta", {}) or {}
    pixdim = meta.get("pixdim")
    if pixdim is not None and "sform_code" in meta and len(np.asarray(pixdim)) >= 4:
        return [float(abs(np.float32(s))) for s in np.asarray(pixdim)[1:4][::-1]]
    affine = np.asarray(volume.affine, dtype=np.float64)
    return [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)[::-1]]


def prepare_image(volume: MetaTensor, config: ModelConfig) -> MetaTensor:
    """(X, Y, Z) volume -> (1, X', Y', Z') network input, as nnU-Net preprocesses a case for prediction."""
    plans_manager, configuration, dataset = managers(config)
    properties = {"spacing": _spacing(volume)}
    data, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
        _reader_order(volume)[None], None, properties, plans_manager, configuration, dataset
    )
    recorded = {
        "spacing": properties["spacing"],
        "shape_before_cropping": [int(s) for s in properties["shape_before_cropping"]],
        "bbox_used_for_cropping": [[int(a), int(b)] for a, b in properties["bbox_used_for_cropping"]],
        "shape_after_cropping_and_before_resampling": [
            int(s) for s in properties["shape_after_cropping_and_before_resampling"]
        ],
    }
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(data)), meta={META_KEY: recorded})


def recorded(prepared: MetaTensor) -> Dict[str, Any]:
    meta = getattr(prepared, "meta", {}) or {}
    if META_KEY not in meta:
        raise ValueError("the image was not prepared by the nnU-Net pipeline (no recorded crop and shapes)")
    return meta[META_KEY]


def _target_spacing(configuration: ConfigurationManager, original_transposed: list) -> list:
    spacing = list(configuration.spacing)
    return spacing if len(spacing) == 3 else [original_transposed[0], *spacing]


def _transposed_spacing(plans_manager: PlansManager, props: Dict[str, Any]) -> list:
    return [props["spacing"][i] for i in plans_manager.transpose_forward]


def prepare_label(label: MetaTensor, config: ModelConfig, image: MetaTensor) -> torch.Tensor:
    """(X, Y, Z) class ids -> (1, X', Y', Z'), the image's transpose and crop box, then nnU-Net's segmentation
    resampling (per-label linear, z nearest where anisotropic) to the image's network-space shape. Voxels outside
    the image's non-zero box stay background (nnU-Net's training marks them -1 and ignores them in its loss)."""
    plans_manager, configuration, _ = managers(config)
    props = recorded(image)
    seg = _reader_order(label)[None].transpose([0, *[i + 1 for i in plans_manager.transpose_forward]])
    seg = seg[(slice(None), *bounding_box_to_slice(props["bbox_used_for_cropping"]))]
    original = _transposed_spacing(plans_manager, props)
    resampled = configuration.resampling_fn_seg(
        np.round(seg).astype(np.int16), list(image.shape[1:]), original, _target_spacing(configuration, original)
    )
    return torch.as_tensor(np.asarray(resampled, dtype=np.float32))


def _back(prepared: MetaTensor, channels: torch.Tensor, config: ModelConfig, fn: str, fill: float) -> torch.Tensor:
    """(C, X', Y', Z') -> (C, X, Y, Z) on the scan's grid: resampled back with the plans' function `fn`, the crop
    box undone (`fill` outside it), transpose_backward, file order."""
    plans_manager, configuration, _ = managers(config)
    props = recorded(prepared)
    original = _transposed_spacing(plans_manager, props)
    resample = getattr(configuration, fn)
    data = channels.cpu().numpy()
    if fn == "resampling_fn_seg":
        data = np.round(data).astype(np.int16)
    restored = np.asarray(
        resample(
            data,
            props["shape_after_cropping_and_before_resampling"],
            _target_spacing(configuration, original),
            original,
        )
    )
    full = np.full((channels.shape[0], *props["shape_before_cropping"]), fill, dtype=restored.dtype)
    full = insert_crop_into_image(full, restored, props["bbox_used_for_cropping"])
    full = full.transpose([0, *[i + 1 for i in plans_manager.transpose_backward]])
    return _file_order(full)


def to_original_space(prepared: MetaTensor, channels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Continuous maps (probabilities, entropy) back as nnU-Net resamples probabilities; 0 outside the box."""
    return _back(prepared, channels.float(), config, "resampling_fn_probabilities", 0.0).float()


def labels_to_original_space(prepared: MetaTensor, labels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """An (X', Y', Z') class-id map back with nnU-Net's segmentation resampling; background outside the box."""
    return _back(prepared, labels[None], config, "resampling_fn_seg", 0)[0].to(torch.uint8)


def logits_to_labels(prepared: MetaTensor, logits: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(X, Y, Z) uint8 class ids on the scan's grid from network-space logits: nnU-Net's own export (logits
    resampled back, argmax, crop undone, transpose_backward)."""
    plans_manager, configuration, dataset = managers(config)
    props = dict(recorded(prepared))
    segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits.cpu(),
        plans_manager,
        configuration,
        plans_manager.get_label_manager(dataset),
        props,
        num_threads_torch=torch.get_num_threads(),
    )
    return _file_order(np.asarray(segmentation)).to(torch.uint8)


class WindowPredictor:
    """nnU-Net's sliding window (its predictor object, initialised with asfda's network): patch size, step 0.5,
    Gaussian weighting and mirroring over the checkpoint's axes, as `nnUNetv2_predict` runs them. Each fold runs
    the whole window and their logits are averaged, in nnU-Net's order."""

    def __init__(self, config: ModelConfig, device: str):
        plans_manager, configuration, dataset = managers(config)
        stored = config.nnunet
        torch_device = torch.device(device)
        # Its constructor prints a note on every CPU device; asfda's output stays its own.
        with contextlib.redirect_stdout(io.StringIO()):
            self.predictor = self._predictor(stored, torch_device)
        axes = stored.get("mirror_axes")
        self.predictor.manual_initialization(
            nn.Identity(),
            plans_manager,
            configuration,
            None,
            dataset,
            stored["trainer"],
            tuple(axes) if axes is not None else None,
        )

    @staticmethod
    def _predictor(stored: Dict[str, Any], torch_device: torch.device) -> nnUNetPredictor:
        return nnUNetPredictor(
            tile_step_size=float(stored.get("step_size", 0.5)),
            use_gaussian=True,
            use_mirroring=stored.get("mirror_axes") is not None,
            perform_everything_on_device=torch_device.type == "cuda",
            device=torch_device,
            verbose=False,
            allow_tqdm=False,
        )

    def logits(self, network: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """(C, X', Y', Z') logits of the (C_in, X', Y', Z') input, in nnU-Net's float16 (its export resamples
        them in that type too)."""
        folds = list(getattr(network, "folds", [network]))
        prediction = None
        for fold in folds:
            self.predictor.network = fold
            out = self.predictor.predict_sliding_window_return_logits(torch.as_tensor(image).float()).cpu()
            prediction = out if prediction is None else prediction + out
        self.predictor.network = nn.Identity()
        if len(folds) > 1:
            prediction /= len(folds)
        return prediction
