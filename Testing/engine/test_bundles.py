import json
import shutil

import numpy as np
import pytest
import torch
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import load_volume
from asfda.models.preprocess import prepare_image, prepare_label
from asfda.models.store import ModelStore
from bundle_helpers import ct_volume, spleen_like, swin_like, wholebody_like, write_bundle
from engine_helpers import write_nifti

# Not the bundles' 1.5 x 1.5 x 2 mm, so their Spacing step resamples and its inverse has work to do.
SCAN_AFFINE = np.diag([1.2, 1.3, 2.5, 1.0])
SHAPES = {"spleen": spleen_like, "swin": swin_like, "wholebody": wholebody_like}


def _datastore(tmp_path, n=3):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for i in range(n):
        _, image = ct_volume(i, strength=0.3 * i)
        write_nifti(ds / "images" / f"ct{i}.nii.gz", image, SCAN_AFFINE)
    return ds


def _import(ds, bundle, *extra):
    return main(["model", "import", "--datastore", str(ds), "--bundle", str(bundle), *extra])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_bundle_imports_predicts_ranks_and_adapts(tmp_path, capsys, shape):
    ds = _datastore(tmp_path)
    bundle = write_bundle(tmp_path / f"{shape}_bundle", SHAPES[shape]())
    assert _import(ds, bundle) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported v0001: state_dict: loaded")
    store = Datastore(ds)
    config = store.models.load().config
    expected = {"spleen": (2, "gaussian", "constant"), "swin": (14, "constant", "constant")}
    labels, blend, padding = expected.get(shape, (105, "gaussian", "replicate"))
    assert (config.out_channels, config.sw_mode, config.sw_padding_mode) == (labels, blend, padding)
    assert config.sw_overlap == (0.25 if shape == "wholebody" else 0.5)
    assert config.labels["background"] == 0 and (shape != "swin" or config.labels["left kidney"] == 3)

    # The version is self-contained: it still loads and predicts with the user's bundle folder gone.
    shutil.rmtree(bundle)
    assert (ds / "models" / "v0001" / "bundle" / "configs" / "inference.json").exists()
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    prediction = load_volume(ds / "labels" / "prediction" / "ct0.nii.gz")
    assert tuple(prediction.shape) == (20, 20, 16)
    assert np.allclose(prediction.affine.numpy(), SCAN_AFFINE, atol=1e-4)
    assert set(np.unique(prediction.numpy()).astype(int)) <= set(range(labels))

    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.strip().endswith("*")]) == 1

    label, _ = ct_volume(0)
    store.save_label("ct0", LabelTag.FINAL, label * (labels - 1), SCAN_AFFINE, config.label_values)
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 0
    assert "new active model v0002 (parent v0001)" in capsys.readouterr().out
    child = json.loads((ds / "models" / "v0002" / "config.json").read_text())
    assert child["bundle"] == "bundle" and (ds / "models" / "v0002" / "bundle" / "configs" / "metadata.json").exists()


def test_bundle_preprocessing_applies_the_window_and_resamples_labels_with_nearest(tmp_path):
    bundle = write_bundle(tmp_path / "swin", swin_like())
    from asfda.models.bundle import read_bundle

    config = read_bundle(bundle).config
    label, image = ct_volume(4)
    image_path = write_nifti(tmp_path / "ct.nii.gz", image, SCAN_AFFINE)
    classes = (label * 13).astype(np.uint8)  # the highest BTCV label, so a linear blend would give 1..12
    classes[label == 0] = np.where(ct_volume(5)[0][label == 0] > 0, 7, 0)
    label_path = write_nifti(tmp_path / "lab.nii.gz", classes, SCAN_AFFINE)
    prepared = prepare_image(load_volume(image_path), config)
    assert float(prepared.min()) >= 0.0 and float(prepared.max()) <= 1.0  # window -175..250 to 0..1
    assert np.isclose(float(prepared[0, 10, 10, 8]), np.clip((image[8, 9, 10] + 175) / 425, 0, 1), atol=0.25)
    assert np.allclose(np.abs(np.diag(prepared.affine.numpy()))[:3], [1.5, 1.5, 2.0], atol=1e-4)
    prepared_label = prepare_label(load_volume(label_path), config)
    assert prepared_label.shape == prepared.shape
    assert set(np.unique(prepared_label.numpy()).astype(int)) <= {0, 7, 13}


def _refused(tmp_path, capsys, bundle, *extra):
    ds = tmp_path / "ds"
    assert _import(ds, bundle, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("asfda model import: error:")
    assert not ModelStore(ds / "models").versions()  # nothing half-imported
    return err


def test_sigmoid_and_thresholded_outputs_are_refused(tmp_path, capsys):
    shape = spleen_like()
    bundle = write_bundle(tmp_path / "b", shape)
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    inference["postprocessing"]["transforms"][0] = {"_target_": "Activationsd", "keys": "pred", "sigmoid": True}
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    assert "sigmoid (multi-label)" in _refused(tmp_path, capsys, bundle)
    inference["postprocessing"]["transforms"][0] = {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    assert "thresholds its outputs" in _refused(tmp_path, capsys, bundle)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"in_channels": 2}, "2 input channels"),
        ({"inferer": {"_target_": "SimpleInferer"}}, "needs a SlidingWindowInferer"),
        (
            {"postprocessing": {"_target_": "Compose", "transforms": [{"_target_": "Lambdad", "keys": "pred"}]}},
            "post-processing step Lambda cannot be reproduced or inverted",
        ),
        (
            {
                "preprocessing": {
                    "_target_": "Compose",
                    "transforms": [
                        {"_target_": "LoadImaged", "keys": "image"},
                        {"_target_": "RandFlipd", "keys": "image", "prob": 0.5},
                    ],
                }
            },
            "preprocessing step RandFlip is not supported",
        ),
        (
            {
                "preprocessing": {
                    "_target_": "Compose",
                    "transforms": [{"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}],
                }
            },
            "preprocessing step CropForeground is not supported",
        ),
    ],
)
def test_bundles_asfda_cannot_honour_are_refused_with_their_reason(tmp_path, capsys, change, reason):
    shape = spleen_like()
    if "in_channels" in change:
        shape["network_def"]["in_channels"] = 2
    bundle = write_bundle(tmp_path / "b", shape, **change)
    assert reason in _refused(tmp_path, capsys, bundle)


def test_wrong_weights_nnunet_folders_and_torchscript_only_bundles_are_refused(tmp_path, capsys):
    bundle = write_bundle(tmp_path / "b", spleen_like())
    other = wholebody_like()
    torch.manual_seed(0)
    from monai.bundle import ConfigParser

    torch.save(ConfigParser(other).get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    assert "weights do not fit the network" in _refused(tmp_path, capsys, bundle)

    nnunet = tmp_path / "Dataset009_Spleen" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (nnunet / "fold_0").mkdir(parents=True)
    (nnunet / "plans.json").write_text("{}")
    (nnunet / "dataset.json").write_text("{}")
    assert "export the trained network as a MONAI bundle" in _refused(tmp_path, capsys, nnunet)

    (bundle / "models" / "model.pt").rename(bundle / "models" / "model.ts")
    assert "needs the state dict models/model.pt" in _refused(tmp_path, capsys, bundle)
    (tmp_path / "plain").mkdir()
    assert "not a MONAI bundle, missing configs/inference.json" in _refused(tmp_path, capsys, tmp_path / "plain")


def test_prediction_uses_the_bundles_blending_and_padding(tmp_path, monkeypatch):
    import asfda.models.inference
    from asfda.models.bundle import load_bundle
    from asfda.models.inference import Predictor

    spec, _ = load_bundle(write_bundle(tmp_path / "wholebody", wholebody_like()))
    seen = {}
    real = asfda.models.inference.sliding_window_inference

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(asfda.models.inference, "sliding_window_inference", recording)
    Predictor(spec.network, spec.config).forward(torch.zeros(1, 12, 12, 12), collect=False)
    assert (seen["mode"], seen["padding_mode"], seen["overlap"], list(seen["roi_size"])) == (
        "gaussian",
        "replicate",
        0.25,
        [16, 16, 16],
    )


def test_a_bundle_version_exports_and_imports_back_with_its_configs_and_reference(tmp_path, capsys):
    ds = _datastore(tmp_path, n=1)
    refs = tmp_path / "reference"
    refs.mkdir()
    write_nifti(refs / "src.nii.gz", ct_volume(9)[1], SCAN_AFFINE)
    assert _import(ds, write_bundle(tmp_path / "wb", wholebody_like()), "--reference", str(refs)) == 0
    assert main(["model", "export", "--datastore", str(ds), "--out", str(tmp_path / "out")]) == 0
    other = tmp_path / "other"
    assert main(["model", "import", "--datastore", str(other), "--from", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    model = Datastore(other).models.load()
    assert model.config.bundle == "bundle" and model.config.out_channels == 105
    assert model.reference_stats.volumes == ["src"]
    assert (other / "models" / "v0001" / "bundle" / "configs" / "inference.json").exists()
