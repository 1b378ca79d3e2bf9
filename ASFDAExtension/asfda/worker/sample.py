"""A small synthetic datastore (bright blobs in noise + a fresh small UNet), for the load check and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import nibabel as nib
import numpy as np

from asfda.data.datastore import Datastore
from asfda.models.config import ModelConfig
from asfda.models.networks import build_network

TINY_UNET = {"channels": [4, 8], "strides": [2], "num_res_units": 0, "norm": "batch"}


def sample_affine() -> np.ndarray:
    affine = np.diag([-1.5, 1.2, 2.0, 1.0])  # a flipped axis and unequal spacing catch geometry mistakes
    affine[:3, 3] = [12.0, -30.0, 4.0]
    return affine


def make_sample_datastore(
    root: Path,
    n_cases: int = 6,
    size: int = 16,
    network_args: Optional[Dict] = None,
    seed: int = 0,
) -> Dict[str, np.ndarray]:
    """Write images to root/images and a freshly initialised model as v0001; return the true labels."""
    import torch

    store = Datastore(root)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1)
    truth: Dict[str, np.ndarray] = {}
    for index in range(n_cases):
        centre = rng.uniform(size * 0.35, size * 0.65, 3)
        label = (np.linalg.norm(grid - centre, axis=-1) < size * 0.25).astype(np.uint8)
        image = rng.normal(0.0, 1.0, (size,) * 3) + label * rng.uniform(2.0, 4.0)
        case_id = f"case{index:02d}"
        nib.save(
            nib.Nifti1Image(image.astype(np.float32), sample_affine()), str(store.images_dir / f"{case_id}.nii.gz")
        )
        truth[case_id] = label
    config = ModelConfig(
        network="UNet",
        network_args=dict(network_args or TINY_UNET),
        labels={"background": 0, "blob": 1},
        label_colors={"blob": [0.9, 0.4, 0.2]},
        roi_size=[size, size, size],
    ).validate()
    torch.manual_seed(seed)
    store.models.publish(build_network(config), config, parent=None, note="sample: fresh weights")
    return truth


def write_labels(truth: Dict[str, np.ndarray], folder: Path, case_ids: List[str]) -> Dict[str, Path]:
    """Label files as a client would upload them (NIfTI, the images' geometry)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case_id in case_ids:
        paths[case_id] = folder / f"{case_id}-label.nii.gz"
        nib.save(nib.Nifti1Image(truth[case_id], sample_affine()), str(paths[case_id]))
    return paths
