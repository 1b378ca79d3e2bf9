"""Tiny synthetic volumes and networks so engine tests run in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from asfda.models.config import ModelConfig

torch.set_num_threads(1)

SHAPE = (24, 24, 24)


def tiny_config(labels=None) -> ModelConfig:
    return ModelConfig(
        network="UNet",
        network_args={"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0, "norm": "batch"},
        labels=labels or {"background": 0, "organ": 1},
        roi_size=list(SHAPE),
    ).validate()


def blob(seed: int, shape=SHAPE):
    """An ellipsoid 'organ' at a random position and size; returns (label, image) on a T1-like contrast."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    center = np.array(shape) / 2 + rng.uniform(-3, 3, 3)
    radii = rng.uniform(4, 7, 3)
    label = (((grid - center) / radii) ** 2).sum(-1) <= 1.0
    image = np.where(label, 1.0, 0.2) + rng.normal(0, 0.05, shape)
    return label.astype(np.uint8), image.astype(np.float32)


def shifted(image: np.ndarray, label: np.ndarray, seed: int, strength: float = 1.0) -> np.ndarray:
    """Target-domain look: inverted contrast, stronger noise."""
    rng = np.random.default_rng(seed)
    out = np.where(label > 0, 1.0 - 0.8 * strength, 0.2 + 0.6 * strength) + rng.normal(
        0, 0.05 + 0.1 * strength, label.shape
    )
    return out.astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    affine = np.diag([1.5, 1.0, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def pool_datastore(root: Path, cases: int):
    """A datastore with a tiny untrained UNet as v0001 and `cases` blobs shifted by growing strength."""
    from asfda.data.datastore import Datastore
    from asfda.models.networks import build_network

    store = Datastore(root)
    config = tiny_config()
    torch.manual_seed(0)
    store.models.publish(build_network(config), config, parent=None, note="test source")
    for seed in range(cases):
        label, image = blob(seed)
        write_nifti(store.images_dir / f"case{seed}.nii.gz", shifted(image, label, seed, strength=seed / cases))
    return store


@pytest.fixture
def config() -> ModelConfig:
    return tiny_config()
