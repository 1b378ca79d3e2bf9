import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from asfda.cli import main
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import load_volume
from asfda.models.preprocess import prepare_image, prepare_label
from asfda.models.store import ModelStore
from bundle_helpers import (
    PEDIATRIC_LABELS,
    ct_volume,
    edit_inference,
    pediatric_like,
    spleen_like,
    swin_like,
    wholebody_like,
    write_bundle,
    write_config,
)
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
                    "transforms": [
                        {"_target_": "LoadImaged", "keys": "image"},
                        {
                            "_target_": "RandCropByPosNegLabeld",
                            "keys": "image",
                            "label_key": "image",
                            "spatial_size": [8, 8, 8],
                        },
                    ],
                }
            },
            "preprocessing step RandCropByPosNegLabel is not supported: it samples random training patches",
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
    assert f"an nnU-Net results folder, not a MONAI bundle; import it with --nnunet {nnunet}" in _refused(
        tmp_path, capsys, nnunet
    )

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


# Issue 19: a bundle's configs are code to MONAI's parser; asfda runs none of it unless told to.


def test_a_bundle_expression_is_refused_at_import_before_it_runs(tmp_path, capsys):
    marker = tmp_path / "marker"
    bundle = write_bundle(tmp_path / "b", spleen_like())
    expression = f"$__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    edit_inference(bundle, lambda c: c.update(network_def=expression))
    err = _refused(tmp_path, capsys, bundle)
    assert "network_def = $__import__('pathlib')" in err and "is a Python expression" in err
    assert "--trust-bundle-code" in err and not marker.exists()


@pytest.mark.parametrize(
    "change, key",
    [
        # an expression reached through a reference from a section asfda builds
        (
            lambda c: c.update(evil="$__import__('os').getcwd()")
            or c["preprocessing"]["transforms"][4].update(a_min="@evil"),
            "evil = $__import__('os')",
        ),
        # DiNTS: its architecture comes from a torch.load (a pickle) behind a subscript
        (
            lambda c: c.update(ckpt="$torch.load('arch.pt')")
            or c["network_def"].update(channels="$@ckpt['channels']"),
            "ckpt = $torch.load('arch.pt') is a Python expression asfda does not run: a call",
        ),
        (lambda c: c["network_def"].update(_requires_="$print(1)"), "network_def._requires_ = $print(1)"),
        (lambda c: c["network_def"].update(_disabled_="$True"), "network_def._disabled_ = $True"),
        (lambda c: c["network_def"].update(_mode_="callable"), "network_def._mode_ = 'callable'"),
        (lambda c: c["inferer"].update(roi_size="%../../outside.json#roi"), "outside.json#roi reads a file outside"),
    ],
)
def test_expressions_special_keys_and_outside_files_are_refused_naming_the_key(tmp_path, capsys, change, key):
    (tmp_path / "outside.json").write_text(json.dumps({"roi": [16, 16, 16]}))
    bundle = edit_inference(write_bundle(tmp_path / "b", spleen_like()), change).parents[1]
    err = _refused(tmp_path, capsys, bundle)
    remedy = "copy what it needs into them" if "outside" in key else "--trust-bundle-code"
    assert key in err and remedy in err


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "subprocess.run",
        "builtins.eval",
        "torch.load",
        "Path",
        "torch.nn.modules.module.OrderedDict",  # a class imported into torch.nn from elsewhere
        "torch.nn.Module.__subclasses__",
        "torch.nn.__init__.Module",
    ],
)
def test_classes_outside_the_allow_list_are_refused_naming_the_key(tmp_path, capsys, target):
    bundle = write_bundle(tmp_path / "b", spleen_like())
    edit_inference(bundle, lambda c: c["network_def"].update(_target_=target))
    err = _refused(tmp_path, capsys, bundle)
    assert f"network_def._target_ = {target} is not a class of monai.networks.*" in err
    assert "--trust-bundle-code" in err


def test_a_reader_named_by_a_nested_load_step_is_never_built(tmp_path, capsys):
    marker = tmp_path / "marker"

    def nested(c):
        load = {"_target_": "LoadImaged", "keys": "image", "reader": "os.system", "command": f"touch {marker}"}
        c["preprocessing"]["transforms"].insert(2, {"_target_": "Compose", "transforms": [load]})

    bundle = edit_inference(write_bundle(tmp_path / "b", spleen_like()), nested).parents[1]
    err = _refused(tmp_path, capsys, bundle)
    assert "LoadImaged takes a class or function by name" in err and not marker.exists()


def test_references_and_macros_inside_the_bundle_configs_are_followed(tmp_path, capsys):
    ds = _datastore(tmp_path, n=1)
    bundle = write_bundle(tmp_path / "b", spleen_like())
    write_config(bundle / "configs" / "common.yaml", {"window": {"low": -57}})

    def referenced(c):
        c["window_high"] = 164
        c["preprocessing"]["transforms"][4].update(a_min="%configs/common.yaml#window#low", a_max="@window_high")
        c["steps"] = c["preprocessing"]["transforms"]
        c["preprocessing"]["transforms"] = "@steps"
        c["inferer"]["sw_batch_size"] = "@##network_def#in_channels"  # relative: two levels up from the key

    edit_inference(bundle, referenced)
    assert _import(ds, bundle) == 0
    capsys.readouterr()
    config = Datastore(ds).models.load().config
    window = config.bundle_preprocessing["steps"][2]
    assert (window["a_min"], window["a_max"], config.sw_batch_size) == (-57, 164, 1)


def test_the_model_zoos_literal_expressions_are_computed_without_running_code(tmp_path, capsys):
    """wholeBody_ct_segmentation picks its spacing with an expression and gives its inferer a device."""
    ds = _datastore(tmp_path, n=1)
    bundle = write_bundle(tmp_path / "b", spleen_like())

    def zoo_style(c):
        c["displayable_configs"] = {"highres": True, "sw_overlap": 0.25}
        c["pixdim"] = "$[1.5, 1.5, 2.0] if @displayable_configs#highres else [3.0, 3.0, 3.0]"
        c["preprocessing"]["transforms"][3]["pixdim"] = "@pixdim"
        c["preprocessing"]["transforms"][4]["a_max"] = "$-57 + 2 * 110.5"
        c["preprocessing"]["transforms"][5]["device"] = "$torch.device('cpu')"  # EnsureTyped: asfda's own step
        c["inferer"].update(overlap="@displayable_configs#sw_overlap", device="$torch.device('cuda:0')")

    edit_inference(bundle, zoo_style)
    assert _import(ds, bundle) == 0
    capsys.readouterr()
    config = Datastore(ds).models.load().config
    spacing, window = config.bundle_preprocessing["steps"][1:]
    assert (spacing["pixdim"], window["a_max"], config.sw_overlap) == ([1.5, 1.5, 2.0], 164.0, 0.25)


def test_literal_expressions_compute_plain_values_and_refuse_everything_else():
    from asfda.models.bundle_expressions import NotALiteral, evaluate_literal

    values = {"a": 3, "b#c": [1, 2]}
    assert evaluate_literal("[@a * 2, @b#c[1]] if @a > 2 and not False else None", values.get) == [6, 2]
    assert evaluate_literal("{'k': -@a, 'in': 2 in @b#c}", values.get) == {"k": -3, "in": True}
    assert evaluate_literal("len(@b#c) + max(@b#c)", values.get) == 4  # pediatric_abdominal's spatial_dims
    for code, construct in [
        ("__import__('os').system('id')", "a call"),
        ("().__class__.__base__", "an attribute"),
        ("open", "a Python name"),
        ("max(@b#c, key=print)", "keyword or starred arguments to max()"),
        ("getattr(@a, 'real')", "a call"),
        ("(lambda: 1)()", "a call"),
        ("[i for i in @b#c]", "a comprehension"),
        ("'x' * 100000", "a repeat to more than 10000 items"),
        ("1 / 0", "cannot be computed (ZeroDivisionError"),
    ]:
        with pytest.raises(NotALiteral, match=re.escape(construct)):
            evaluate_literal(code, values.get)


def test_a_yaml_config_whose_aliases_expand_exponentially_is_refused_quickly(tmp_path, capsys):
    import time

    bundle = write_bundle(tmp_path / "b", spleen_like(), suffix=".yaml")
    inference = yaml.safe_load((bundle / "configs" / "inference.yaml").read_text())
    laughs: list = [0] * 10
    for _ in range(7):  # 10^8 values once aliases are followed; a few hundred bytes of YAML
        laughs = [laughs] * 10
    inference["network_def"]["act"] = laughs
    write_config(bundle / "configs" / "inference.yaml", inference)
    assert "&id" in (bundle / "configs" / "inference.yaml").read_text()  # written with anchors and aliases
    started = time.monotonic()
    assert "expands to more than 200000 values" in _refused(tmp_path, capsys, bundle)
    assert time.monotonic() - started < 30


def test_trust_bundle_code_is_the_only_way_past_and_the_version_records_it(tmp_path, capsys):
    ds = _datastore(tmp_path, n=1)
    bundle = write_bundle(tmp_path / "b", spleen_like())
    def code_and_listed_steps(c):
        c["network_def"].update(channels="$[4 * 2**i for i in range(3)]")
        c["preprocessing_transforms"] = c["preprocessing"]["transforms"]  # as several Zoo bundles list them
        c["preprocessing"]["transforms"] = "@preprocessing_transforms"

    edit_inference(bundle, code_and_listed_steps)
    assert "network_def.channels = $[4 * 2**i for i in range(3)] is a Python expression" in _refused(
        tmp_path, capsys, bundle
    )
    assert _import(ds, bundle, "--trust-bundle-code") == 0
    out = capsys.readouterr().out
    assert "bundle code trusted (--trust-bundle-code)" in out and "at every load" in out
    meta = json.loads((ds / "models" / "v0001" / "meta.json").read_text())
    assert meta["bundle_code_trusted"] is True and "bundle code trusted" in meta["note"]
    config = Datastore(ds).models.load().config
    assert config.bundle_code_trusted and config.bundle_network is None
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0

    # Taken elsewhere, the trusted version needs the flag again.
    assert main(["model", "export", "--datastore", str(ds), "--out", str(tmp_path / "out")]) == 0
    other = ["model", "import", "--datastore", str(tmp_path / "other"), "--from", str(tmp_path / "out")]
    capsys.readouterr()
    assert main(other) == 2 and "import it with --trust-bundle-code again" in capsys.readouterr().err
    assert main([*other, "--trust-bundle-code"]) == 0

    # A bundle that asks for no code is built from plain values even with the flag.
    plain = tmp_path / "plain_ds"
    assert _import(plain, write_bundle(tmp_path / "plain", spleen_like()), "--trust-bundle-code") == 0
    assert "--trust-bundle-code not needed" in capsys.readouterr().out
    assert json.loads((plain / "models" / "v0001" / "meta.json").read_text())["bundle_code_trusted"] is False


def _no_parser(monkeypatch):
    from asfda.models import bundle_transforms
    from monai.bundle import ConfigParser

    def refuse(*_args, **_kwargs):
        raise AssertionError("MONAI's ConfigParser was used")

    for name in ("__init__", "get_parsed_content", "read_config", "parse"):
        monkeypatch.setattr(ConfigParser, name, refuse)
    bundle_transforms._cached_safe.cache_clear()
    bundle_transforms._cached_from_folder.cache_clear()


def test_a_later_load_of_an_imported_version_never_uses_the_config_parser(tmp_path, capsys, monkeypatch):
    ds = _datastore(tmp_path, n=1)
    assert _import(ds, write_bundle(tmp_path / "b", spleen_like())) == 0
    stored = json.loads((ds / "models" / "v0001" / "config.json").read_text())
    assert stored["bundle_network"]["target"] == "monai.networks.nets.unet.UNet"
    assert stored["bundle_network"]["kwargs"]["channels"] == [4, 8, 16]
    assert [s["_target_"].rsplit(".", 1)[1] for s in stored["bundle_preprocessing"]["steps"]] == [
        "Orientationd",
        "Spacingd",
        "ScaleIntensityRanged",
    ]
    _no_parser(monkeypatch)
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0


def test_an_older_version_without_the_stored_form_is_checked_before_it_is_built(tmp_path, capsys, monkeypatch):
    ds = _datastore(tmp_path, n=1)
    assert _import(ds, write_bundle(tmp_path / "b", spleen_like())) == 0
    version = ds / "models" / "v0001"
    config = json.loads((version / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("bundle_network", "bundle_preprocessing")}
    (version / "config.json").write_text(json.dumps(old))
    from monai.bundle import ConfigParser

    monkeypatch.setattr(ConfigParser, "get_parsed_content", lambda *a, **k: pytest.fail("parsed"))
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0

    marker = tmp_path / "marker"
    edit_inference(version / "bundle", lambda c: c.update(network_def=f"$open({str(marker)!r}, 'w')"))
    capsys.readouterr()
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 2
    err = capsys.readouterr().err
    assert "network_def = $open(" in err and "--trust-bundle-code" in err and not marker.exists()


def test_a_yaml_bundle_imports_and_predicts_exactly_like_its_json_twin(tmp_path, capsys):
    predictions = []
    for suffix in (".json", ".yaml"):
        ds = _datastore(tmp_path / suffix[1:], n=1)
        bundle = write_bundle(tmp_path / f"bundle{suffix}", swin_like(), suffix=suffix)
        assert (bundle / "configs" / f"inference{suffix}").exists()
        assert _import(ds, bundle) == 0
        shutil.rmtree(bundle)  # the version keeps its YAML configs
        assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
        predictions.append(load_volume(ds / "labels" / "prediction" / "ct0.nii.gz").numpy())
    assert "imported v0001" in capsys.readouterr().out
    assert np.array_equal(predictions[0], predictions[1]) and len(np.unique(predictions[0])) > 1


def test_a_model_json_naming_a_class_outside_the_allow_list_is_refused(tmp_path, capsys):
    ds = _datastore(tmp_path, n=1)
    assert _import(ds, write_bundle(tmp_path / "b", spleen_like())) == 0
    out = tmp_path / "out"
    assert main(["model", "export", "--datastore", str(ds), "--out", str(out)]) == 0
    exported = json.loads((out / "model.json").read_text())
    import_from = ["model", "import", "--datastore", str(tmp_path / "other"), "--from", str(out)]
    for change, key in [
        ({"bundle_network": {**exported["bundle_network"], "target": "os.system"}}, "target = os.system"),
        ({"bundle_network": None, "network": "os.system"}, "network = os.system"),
    ]:
        (out / "model.json").write_text(json.dumps({**exported, **change}))
        capsys.readouterr()
        assert main(import_from) == 2
        err = capsys.readouterr().err
        assert key in err and "is not a class of monai.networks.*" in err
    assert not (tmp_path / "other" / "models").exists() or not list((tmp_path / "other" / "models").glob("v*"))


# Issue 21: the whole cause of a failure in one line, with the versions and the remedy for a known change.


def test_a_removed_network_argument_names_the_monai_version_and_the_remedy(tmp_path, capsys):
    import monai

    bundle = write_bundle(tmp_path / "b", swin_like())  # as swin_unetr_btcv_segmentation ships it for MONAI 1.4
    edit_inference(bundle, lambda c: c["network_def"].update(img_size=[64, 32, 32]))
    err = _refused(tmp_path, capsys, bundle)
    assert "unexpected keyword argument 'img_size'" in err and "SwinUNETR has no 'img_size' since MONAI 1.5" in err
    assert f"installed: MONAI {monai.__version__}, torch {torch.__version__}" in err
    assert "remove img_size from the bundle's network_def" in err


def test_whole_cause_keeps_every_line_and_every_chained_exception():
    from asfda.models.bundle_failures import whole_cause

    try:
        try:
            raise KeyError("inner reason")
        except KeyError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression:\nthe expression\n  on line 2") from inner
    except RuntimeError as exc:
        cause = whole_cause(exc)
    assert cause == (
        "RuntimeError: Failed to evaluate ConfigExpression: the expression on line 2 <- KeyError: 'inner reason'"
    )


def _stored_weights_equal(ds, path):
    stored = torch.load(ds / "models" / "v0001" / "weights.pt", weights_only=True)
    expected = torch.load(path, weights_only=True)
    return stored.keys() == expected.keys() and all(torch.equal(stored[k], expected[k]) for k in stored)


def _second_weights(bundle, name, seed=7):
    from monai.bundle import ConfigParser

    torch.manual_seed(seed)
    network = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
    torch.save(network.get_parsed_content("network_def").state_dict(), bundle / "models" / name)
    return bundle / "models" / name


def test_the_weights_file_the_bundles_config_names_is_loaded_and_named(tmp_path, capsys):
    bundle = write_bundle(tmp_path / "b", spleen_like())
    tuned = _second_weights(bundle, "dynunet_FT.pt")
    loader = {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/dynunet_FT.pt'"}
    edit_inference(bundle, lambda c: c.update(checkpointloader={**loader, "load_dict": {"model": "@network"}}))
    assert _import(tmp_path / "ds1", bundle) == 0
    assert "weights models/dynunet_FT.pt (named by checkpointloader#load_path)" in capsys.readouterr().out
    assert _stored_weights_equal(tmp_path / "ds1", tuned)

    # --weights picks another file the bundle offers, relative to the bundle folder.
    assert _import(tmp_path / "ds2", bundle, "--weights", "models/model.pt") == 0
    assert "weights models/model.pt (--weights)" in capsys.readouterr().out
    assert _stored_weights_equal(tmp_path / "ds2", bundle / "models" / "model.pt")
    # Neither weights file is copied into the version: it holds its own weights.pt.
    assert json.loads((tmp_path / "ds2" / "models" / "v0001" / "config.json").read_text())["bundle_files"] == []

    # `modelname` (as pediatric_abdominal_ct_segmentation names its file) when no CheckpointLoader says.
    edit_inference(bundle, lambda c: (c.pop("checkpointloader"), c.update(modelname="dynunet_FT.pt")))
    assert _import(tmp_path / "ds3", bundle) == 0
    assert "weights models/dynunet_FT.pt (named by modelname)" in capsys.readouterr().out
    assert _stored_weights_equal(tmp_path / "ds3", tuned)


def test_a_missing_or_outside_weights_file_is_refused_naming_what_the_bundle_offers(tmp_path, capsys):
    bundle = write_bundle(tmp_path / "b", spleen_like())
    _second_weights(bundle, "model_lowres.pt")
    edit_inference(bundle, lambda c: c.update(modelname="model_highres.pt"))
    err = _refused(tmp_path, capsys, bundle)
    assert "missing models/model_highres.pt (named by modelname)" in err
    assert "it offers models/model.pt, models/model_lowres.pt: choose one with --weights" in err
    (tmp_path / "outside.pt").write_bytes((bundle / "models" / "model.pt").read_bytes())
    err = _refused(tmp_path, capsys, bundle, "--weights", str(tmp_path / "outside.pt"))
    assert "--weights" in err and "is outside the bundle folder" in err


def test_a_pediatric_like_bundle_names_its_labels_from_label_def(tmp_path, capsys):
    ds = _datastore(tmp_path, n=1)
    bundle = write_bundle(tmp_path / "ped", pediatric_like(), suffix=".yaml")
    assert not (bundle / "models" / "model.pt").exists()  # only dynunet_FT.pt, named by `modelname`
    assert _import(ds, bundle) == 0
    out = capsys.readouterr().out
    assert "labels background, liver, spleen, pancreas (from label_def)" in out
    assert "weights models/dynunet_FT.pt (named by modelname)" in out
    config = Datastore(ds).models.load().config
    assert config.labels == {name: int(value) for value, name in PEDIATRIC_LABELS.items()}
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0


@pytest.mark.parametrize(
    "output, expected",
    [
        # name -> value, as some bundles write label_def; channel_def fills what label_def leaves out
        (
            {"num_channels": 3, "label_def": {"liver": 1}, "channel_def": {"0": "background", "2": "tumour"}},
            ({"background": 0, "liver": 1, "tumour": 2}, "label_def and channel_def"),
        ),
        (
            {"num_channels": 3, "channel_def": {"1": "liver"}},
            ({"background": 0, "liver": 1, "label_2": 2}, "channel_def, 1 unnamed (label_N)"),
        ),
    ],
)
def test_label_def_and_channel_def_are_both_read(output, expected):
    from asfda.models.bundle_labels import bundle_labels

    assert bundle_labels(output) == expected


def test_a_one_channel_output_with_many_named_labels_says_the_network_writes_a_label_map():
    from asfda.models.bundle_labels import bundle_labels
    from asfda.models.bundle_safety import UnsupportedBundle

    with pytest.raises(UnsupportedBundle, match="metadata names 127 labels: the network writes a label map itself"):
        bundle_labels({"num_channels": 1, "label_def": {str(i): f"class {i}" for i in range(127)}})
    with pytest.raises(UnsupportedBundle, match=r"label value\(s\) \[5\] but the output has 3 channels"):
        bundle_labels({"num_channels": 3, "label_def": {"5": "tumour"}})


def test_a_bundles_own_scripts_and_referenced_files_travel_with_the_version(tmp_path, capsys):
    import sys

    from bundle_helpers import write_scripts_bundle

    ds = _datastore(tmp_path, n=2)
    bundle = write_scripts_bundle(tmp_path / "unest_bundle")
    err = _refused(tmp_path, capsys, bundle)
    assert "network_def._target_ = scripts.networks.tiny_unest.TinyUNesT is not a class of" in err
    assert "--trust-bundle-code" in err

    assert _import(ds, bundle, "--trust-bundle-code") == 0
    capsys.readouterr()
    # The bundle root was importable for the build only.
    assert str(bundle) not in sys.path and not any(m.split(".")[0] == "scripts" for m in sys.modules)
    kept = ds / "models" / "v0001" / "bundle"
    assert (kept / "scripts" / "networks" / "tiny_unest.py").is_file()
    assert (kept / "models" / "search_code_18590.pt").is_file()
    assert not (kept / "models" / "model.pt").exists()  # the weights live in the version's weights.pt
    config = json.loads((ds / "models" / "v0001" / "config.json").read_text())
    assert config["bundle_files"] == ["models/search_code_18590.pt", "scripts"]

    shutil.rmtree(bundle)
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    prediction = load_volume(ds / "labels" / "prediction" / "ct0.nii.gz")
    assert tuple(prediction.shape) == (20, 20, 16)
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    assert not any(m.split(".")[0] == "scripts" for m in sys.modules)


def test_a_step_asfda_cannot_replay_is_refused_in_one_line_saying_remove_it(tmp_path, capsys):
    bundle = write_bundle(tmp_path / "b", spleen_like())
    step = {"_target_": "SpatialCropd", "keys": "image", "roi_center": [5, 5, 5], "roi_size": [8, 8, 8]}
    edit_inference(bundle, lambda c: c["preprocessing"]["transforms"].insert(4, step))
    err = _refused(tmp_path, capsys, bundle)
    assert "preprocessing step SpatialCrop is not supported (asfda replays CenterSpatialCrop, CropForeground" in err
    assert err.endswith("remove SpatialCropd from the bundle's preprocessing")


OBLIQUE_AFFINE = np.array([[0.0, -0.8, 0.0, 10.0], [0.78, 0.0, 0.18, -4.0], [-0.14, 0.0, 2.99, 3.0], [0, 0, 0, 1.0]])


def _monai_label_map(bundle, image_path):
    """The bundle's own pipeline, run by MONAI: preprocessing, inferer, postprocessing without saving."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), "device": "cpu"})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(image_path)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    steps = [t for t in parser.get_parsed_content("postprocessing").transforms if "SaveImage" not in type(t).__name__]
    return np.asarray(Compose(steps)(data)["pred"][0]).astype(np.uint8)


def _balanced(bundle, image_path):
    """Shift the last layer's bias so the random network splits the volume about evenly between its 2 classes:
    an all-background prediction would agree with anything."""
    from asfda.models.bundle import load_bundle
    from asfda.models.inference import Predictor

    spec, _ = load_bundle(bundle)
    network = spec.network.eval()
    with torch.no_grad():
        logits = Predictor(network, spec.config, "cpu")._logits(prepare_image(load_volume(image_path), spec.config))
    weights = network.state_dict()
    last_bias = [k for k, v in weights.items() if k.endswith("bias") and v.shape == (2,)][-1]
    weights[last_bias][1] -= (logits[1] - logits[0]).median()
    torch.save(weights, bundle / "models" / "model.pt")


@pytest.mark.parametrize("nearest", [False, True])
def test_invertd_interpolation_is_honoured_and_matches_the_bundles_own_pipeline(tmp_path, capsys, nearest):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    _, image = ct_volume(3, shape=(24, 22, 14))
    image_path = write_nifti(ds / "images" / "ct0.nii.gz", image, OBLIQUE_AFFINE)  # oblique, 0.8 x 0.8 x 3 mm
    bundle = write_bundle(tmp_path / "b", spleen_like(), seed=3)
    edit_inference(bundle, lambda c: c["postprocessing"]["transforms"][1].update(nearest_interp=nearest))
    _balanced(bundle, image_path)
    assert _import(ds, bundle) == 0
    out = capsys.readouterr().out
    config = Datastore(ds).models.load().config
    assert config.invert_probabilities is (not nearest)
    assert f"honoured: Invertd(nearest_interp={str(nearest).lower()})" in out
    assert "dropped: SaveImaged" in out

    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    ours = load_volume(ds / "labels" / "prediction" / "ct0.nii.gz").numpy().astype(np.uint8)
    theirs = _monai_label_map(bundle, image_path)
    assert ours.shape == theirs.shape == image.shape
    assert 0.2 < theirs.mean() < 0.8  # both classes present in quantity
    # Measured: argmax-first agrees with the interpolating pipeline on 75.5% of voxels here; the honoured path
    # on all of them.
    assert np.array_equal(ours, theirs)


def test_probabilities_inverted_a_few_channels_at_a_time_give_the_full_argmax(tmp_path):
    from asfda.models.bundle import read_bundle
    from asfda.models.preprocess import probabilities_to_labels, to_original_space

    config = read_bundle(write_bundle(tmp_path / "b", spleen_like())).config
    volume = load_volume(write_nifti(tmp_path / "ct.nii.gz", ct_volume(2)[1], OBLIQUE_AFFINE))
    prepared = prepare_image(volume, config)
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(14, *prepared.shape[1:]) * 3, dim=0)
    probs[5] = probs[3]  # a tie: the first maximum wins, as argmax
    full = torch.as_tensor(to_original_space(prepared, probs, config)).argmax(dim=0).to(torch.uint8)
    for chunk in (1, 3, 8, 14):
        assert torch.equal(probabilities_to_labels(prepared, probs, config, chunk=chunk), full)


def test_the_summary_lists_every_setting_changed_or_dropped_with_its_reason(tmp_path, capsys):
    bundle = write_bundle(tmp_path / "b", spleen_like())

    def change(c):
        c["preprocessing"]["transforms"][0]["reader"] = "ITKReader"
        c["evaluator"] = {"_target_": "SupervisedEvaluator", "amp": True, "network": "@network"}
        post = c["postprocessing"]["transforms"]
        post.insert(1, post.pop(2))  # AsDiscreted(argmax) before Invertd(nearest_interp=false)

    edit_inference(bundle, change)
    assert _import(tmp_path / "ds", bundle) == 0
    out = capsys.readouterr().out
    assert "changed: Invertd(nearest_interp=false) after the argmax would blend class ids" in out
    assert "dropped: LoadImaged(reader=ITKReader): asfda reads every volume with its own loader" in out
    assert "changed: evaluator amp=true: asfda's precision setting decides" in out
    assert Datastore(tmp_path / "ds").models.load().config.invert_probabilities is False

    edit_inference(bundle, lambda c: c["postprocessing"]["transforms"].pop(2))  # no Invertd at all
    assert _import(tmp_path / "ds2", bundle) == 0
    assert "changed: the postprocessing has no Invertd" in capsys.readouterr().out


def test_two_bundles_shipping_a_scripts_package_never_get_each_others_classes(tmp_path):
    import importlib
    import sys

    from asfda.models.bundle_code import importable

    for value in (1, 2):
        package = tmp_path / f"bundle{value}" / "scripts"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "networks.py").write_text(f"VALUE = {value}\n")
    for value in (1, 2, 1):
        with importable(tmp_path / f"bundle{value}"):
            assert importlib.import_module("scripts.networks").VALUE == value
        assert str(tmp_path / f"bundle{value}") not in sys.path
        assert "scripts" not in sys.modules and "scripts.networks" not in sys.modules
