"""A bundle's CropForegroundd (issue 21): its box is computed on the image as the bundle computes it, the
prediction goes back from the recorded box, and a label replays the image's box."""

import numpy as np
import pytest
from asfda.cli import main
from asfda.data.datastore import Datastore
from asfda.io.volumes import load_volume
from asfda.models.preprocess import prepare_image, prepare_label
from bundle_helpers import ct_volume, edit_inference, spleen_like, write_bundle
from engine_helpers import write_nifti
from test_bundles import OBLIQUE_AFFINE, _balanced, _import, _monai_label_map, _refused


def _crop(**extra):
    # After the CT window (-57..164 to 0..1), as pediatric_abdominal_ct_segmentation places it: the window's
    # 0 is the foreground threshold, so the box depends on the order asfda must keep.
    return {"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "margin": 2, **extra}


def _image_with_air_margin():
    _, image = ct_volume(3, shape=(26, 24, 14))
    image[:6] = -1000.0  # air the crop removes
    image[:, -5:] = -300.0
    return image


def _crop_bundle(tmp_path, **extra):
    bundle = write_bundle(tmp_path / "b", spleen_like(), seed=3)
    edit_inference(bundle, lambda c: c["preprocessing"]["transforms"].insert(5, _crop(**extra)))
    return bundle


@pytest.mark.parametrize("nearest", [False, True])
def test_crop_foreground_labels_equal_the_bundles_own_pipeline(tmp_path, capsys, nearest):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    image = _image_with_air_margin()
    image_path = write_nifti(ds / "images" / "ct0.nii.gz", image, OBLIQUE_AFFINE)  # oblique, 0.8 x 0.8 x 3 mm
    bundle = _crop_bundle(tmp_path, mode="minimum")
    edit_inference(bundle, lambda c: c["postprocessing"]["transforms"][1].update(nearest_interp=nearest))
    _balanced(bundle, image_path)
    assert _import(ds, bundle) == 0
    assert "CropForeground" in capsys.readouterr().out
    config = Datastore(ds).models.load().config
    assert prepare_image(load_volume(image_path), config).shape[1] < 26  # the air is cropped away

    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    ours = load_volume(ds / "labels" / "prediction" / "ct0.nii.gz").numpy().astype(np.uint8)
    theirs = _monai_label_map(bundle, image_path)
    assert ours.shape == theirs.shape == image.shape
    assert 0.1 < theirs.mean() < 0.9
    assert np.array_equal(ours, theirs)


def test_a_label_replays_the_images_crop_box(tmp_path):
    """The label through the bundle's steps with keys image and label, as MONAI's pipeline crops both."""
    from asfda.models.bundle import load_bundle
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    bundle = _crop_bundle(tmp_path)
    config = load_bundle(bundle)[0].config
    image = _image_with_air_margin()
    label = (image > 80).astype(np.uint8)
    image_path = write_nifti(tmp_path / "ct.nii.gz", image, OBLIQUE_AFFINE)
    label_path = write_nifti(tmp_path / "lab.nii.gz", label, OBLIQUE_AFFINE)
    prepared = prepare_image(load_volume(image_path), config)
    ours = prepare_label(load_volume(label_path), config, prepared)
    assert ours.shape == prepared.shape and prepared.shape[1] < 26  # the air is cropped away

    keys = ["image", "label"]
    monai = Compose(
        [
            LoadImaged(keys),
            EnsureChannelFirstd(keys),
            Orientationd(keys, axcodes="RAS"),
            Spacingd(keys, pixdim=[1.5, 1.5, 2.0], mode=("bilinear", "nearest")),
            ScaleIntensityRanged("image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
            CropForegroundd(keys, source_key="image", margin=2),
        ]
    )({"image": str(image_path), "label": str(label_path)})
    assert np.array_equal(ours.numpy(), monai["label"].numpy())
    assert np.allclose(prepared.numpy(), monai["image"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="needs the prepared image"):
        prepare_label(load_volume(label_path), config)


def test_crop_foreground_that_asfda_cannot_replay_is_refused_in_one_line(tmp_path, capsys):
    bundle = _crop_bundle(tmp_path, source_key="label", keys=["image", "label"])
    err = _refused(tmp_path, capsys, bundle)
    assert "preprocessing step CropForeground: CropForegroundd source_key 'label' is not the image key" in err
    normalize = {"_target_": "NormalizeIntensityd", "keys": "image"}
    bundle = write_bundle(tmp_path / "n", spleen_like(), seed=3)

    def normalize_first(c):
        c["preprocessing"]["transforms"][4:5] = [normalize, _crop()]

    edit_inference(bundle, normalize_first)
    err = _refused(tmp_path, capsys, bundle)
    assert err.endswith("move it after CropForegroundd in the bundle's preprocessing")
    assert "preprocessing step NormalizeIntensity before CropForegroundd computes statistics" in err


@pytest.mark.parametrize(
    "step, reason",
    [
        (
            {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 1.0},
            "preprocessing step RandScaleIntensity is random (an augmentation; asfda needs a deterministic "
            "preprocessing): remove RandScaleIntensityd from the bundle's preprocessing",
        ),
        (
            {"_target_": "ScaleIntensityRanged", "keys": "label", "a_min": 0, "a_max": 1, "b_min": 0, "b_max": 1},
            "preprocessing step ScaleIntensityRange does not act on the image key 'image': add 'image' to its keys or "
            "remove ScaleIntensityRanged from the bundle's preprocessing",
        ),
    ],
)
def test_preprocessing_refusals_name_the_step_and_say_what_to_do(tmp_path, capsys, step, reason):
    bundle = write_bundle(tmp_path / "b", spleen_like(), seed=3)
    edit_inference(bundle, lambda c: c["preprocessing"]["transforms"].insert(5, step))
    assert _refused(tmp_path, capsys, bundle).endswith(reason)
