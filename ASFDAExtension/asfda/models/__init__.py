"""One model: config and its checks, networks, weights, the version store, MONAI bundles, nnU-Net folders,
preprocessing, the `Predictor`, per-voxel maps, Dice, reference statistics and export.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "bundle",
    "config",
    "config_checks",
    "dice",
    "export",
    "inference",
    "networks",
    "nnunet_folder",
    "preprocess",
    "reference_stats",
    "store",
    "voxel_maps",
    "weights",
]
