"""`asfda model import --nnunet`: an nnU-Net v2 trained-model folder becomes a new active version.

The version keeps the plans, dataset.json and the folds' weights (asfda.models.nnunet_folder): it loads, ranks,
predicts and adapts without the results folder. nnU-Net's own packages build the network and run the
preprocessing, sliding window and export (asfda.models.nnunet_pipeline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from asfda.data.model_import import ImportResult, reference_for
from asfda.models.config import ModelConfig
from asfda.models.nnunet_folder import (
    NnUNetFolder,
    check_configuration,
    fold_state_dict,
    network_class_name,
    read_nnunet_folder,
    require_nnunet,
)

# What nnUNetv2_predict does that asfda does differently, for the summary.
DIFFERENCES = (
    "reader: asfda's own loader (NIfTI, NRRD, DICOM) gives the voxel grid nnU-Net's SimpleITK/nibabel readers give, "
    "axes reversed as they do; from there preprocessing, sliding window and export are nnunetv2's own functions",
    "precision: nnU-Net's (autocast on a GPU, fp32 on the CPU, window logits accumulated in float16); asfda's "
    "--precision does not apply",
)


def settings_lines(spec: NnUNetFolder, config: ModelConfig, resolved: Dict[str, Any]) -> List[str]:
    """The import summary's lines on what nnU-Net's pipeline does here (`resolved`: the configuration)."""
    props = spec.plans.get("foreground_intensity_properties_per_channel", {}).get("0", {})
    scheme = resolved.get("normalization_schemes", ["?"])[0]
    norm = scheme
    if scheme == "CTNormalization" and props:
        norm += (
            f" (clip to {props.get('percentile_00_5'):g}..{props.get('percentile_99_5'):g}, z-score with mean "
            f"{props.get('mean'):g}, std {props.get('std'):g}: the plans' foreground intensity properties)"
        )
    elif resolved.get("use_mask_for_norm", [False])[0]:
        norm += " (inside the non-zero mask)"
    folds = ", ".join(spec.folds)
    mirror = spec.mirror_axes
    lines = [
        f"nnU-Net {spec.configuration} ({spec.trainer}, {spec.checkpoint}): {config.network}, folds {folds}"
        + (" (logits averaged)" if len(spec.folds) > 1 else ""),
        f"preprocessing: transpose {spec.plans.get('transpose_forward')}, crop to the non-zero box, {norm}, "
        f"resampled to {resolved.get('spacing')} mm",
        f"sliding window: patch {resolved.get('patch_size')}, step 0.5, Gaussian weighting, "
        + (
            f"mirroring over axes {tuple(mirror)}"
            if mirror is not None
            else "no mirroring (the checkpoint allows none)"
        ),
        "export: logits resampled back as the plans' resampling_fn_probabilities, argmax, crop undone, "
        f"transpose {spec.plans.get('transpose_backward')}",
        f"labels {', '.join(config.labels)} (from dataset.json)",
    ]
    if "architecture" not in resolved:
        lines.append(
            "plans.json is in the format of nnU-Net before 2.3: its network converted by nnU-Net's own plans handling"
        )
    return lines + list(DIFFERENCES)


def import_nnunet(
    datastore: Path,
    folder: Path,
    fold: str = "all",
    checkpoint: str = "final",
    reference: Optional[Path] = None,
    device: str = "cpu",
) -> ImportResult:
    """Check the folder, build the network with nnU-Net's code and load the folds; only then publish."""
    require_nnunet()
    from asfda.data.datastore import Datastore
    from asfda.models.networks import build_network
    from asfda.models.weights import load_state

    spec = read_nnunet_folder(folder, fold, checkpoint)
    conf = check_configuration(spec.plans, spec.dataset, spec.configuration)
    labels = dict(sorted(spec.dataset["labels"].items(), key=lambda item: item[1]))
    config = ModelConfig(
        network=network_class_name(conf).rsplit(".", 1)[-1],
        in_channels=1,
        labels=labels,
        roi_size=[int(s) for s in conf["patch_size"]],
        sw_overlap=0.5,
        sw_mode="gaussian",
        nnunet=spec.stored,
    ).validate()
    network = build_network(config)
    report = load_state(network, "nnunet checkpoint", fold_state_dict(spec.weights))
    report.layout = f"nnU-Net {spec.checkpoint} x {len(spec.folds)} fold(s)"
    stats = reference_for(network, config, reference, device)
    note = f"nnU-Net {Path(folder).name} folds {','.join(spec.folds)} ({report.summary()})"
    store = Datastore(datastore, create=True)
    version = store.models.publish(network, config, parent=None, note=note, reference_stats=stats)
    return ImportResult(version, report, stats, settings_lines(spec, config, conf))
