"""`asfda model import --nnunet` (issue 21): a tiny nnU-Net v2 results folder with random weights, written in the
test, checked against nnU-Net's own predictor on an oblique, anisotropic volume."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("nnunetv2") is None:  # installed by scripts/setup.sh test; CI fails loudly, a laptop skips
    if os.environ.get("CI", "").lower() == "true":
        raise ImportError("nnunetv2 is not installed: run scripts/setup.sh test (scripts/nnunet-requirements.txt)")
    pytest.skip("the nnU-Net install (scripts/setup.sh nnunet or test)", allow_module_level=True)

from asfda.cli import main  # noqa: E402
from asfda.data.datastore import Datastore, LabelTag  # noqa: E402
from asfda.io.volumes import load_volume  # noqa: E402
from asfda.models.preprocess import prepare_image, prepare_label  # noqa: E402
from asfda.models.store import ModelStore  # noqa: E402
from engine_helpers import write_nifti  # noqa: E402
from nnunet_helpers import (  # noqa: E402
    ct_like,
    nnunet_label_map,
    oblique_affine,
    plans_json,
    write_results_folder,
)

AFFINE = oblique_affine()  # rotated, 0.7 x 0.9 x 2.5 mm; the plans resample to 0.8 x 0.8 x 3 (z nearest)


def _datastore(tmp_path, n=1):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for i in range(n):
        write_nifti(ds / "images" / f"ct{i}.nii.gz", ct_like(i), AFFINE)
    return ds


def _import(ds, folder, *extra):
    return main(["model", "import", "--datastore", str(ds), "--nnunet", str(folder), *extra])


@pytest.mark.parametrize(
    "folds, fold, normalization, mask, network, before_2_3",
    [
        ((0,), "0", "CTNormalization", False, "PlainConvUNet", False),
        ((0, 1), "all", "ZScoreNormalization", True, "PlainConvUNet", False),
        ((0,), "0", "CTNormalization", False, "ResidualEncoderUNet", False),
        ((0,), "0", "CTNormalization", False, "PlainConvUNet", True),  # plans as nnU-Net < 2.3 wrote them
    ],
)
def test_labels_equal_nnunets_own_predictor_on_an_oblique_anisotropic_volume(
    tmp_path, capsys, folds, fold, normalization, mask, network, before_2_3
):
    plans = plans_json(normalization, mask, network)
    folder = write_results_folder(tmp_path / "results", folds=folds, plans=plans, written_as_before_2_3=before_2_3)
    ds = _datastore(tmp_path)
    assert _import(ds, folder, "--fold", fold) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"imported v0001: nnU-Net checkpoint_final.pth x {len(folds)} fold(s): loaded ")
    assert "crop to the non-zero box" in out and "mirroring over axes (0, 1, 2)" in out
    assert "labels background, organ, vessel (from dataset.json)" in out
    assert ("logits averaged" in out) is (len(folds) > 1)
    if normalization == "CTNormalization":
        assert "clip to -150..250, z-score with mean 60, std 80" in out
    assert ("format of nnU-Net before 2.3" in out) is before_2_3

    theirs = nnunet_label_map(folder, ds / "images" / "ct0.nii.gz", tmp_path / "nnout", folds, "checkpoint_final.pth")
    shutil.rmtree(tmp_path / "results")  # the version is complete without the results folder
    assert main(["infer", "--datastore", str(ds), "ct0"]) == 0
    ours = load_volume(ds / "labels" / "prediction" / "ct0.nii.gz").numpy().astype(np.uint8)
    assert ours.shape == theirs.shape == (40, 36, 20)
    counts = np.bincount(theirs.ravel(), minlength=3)
    assert (counts > 1000).all()  # every class in quantity: a real comparison
    assert np.array_equal(ours, theirs)


def test_an_nnunet_version_ranks_and_adapts_with_reference_statistics(tmp_path, capsys):
    folder = write_results_folder(tmp_path / "results")
    ds = _datastore(tmp_path, n=2)
    refs = tmp_path / "reference"
    refs.mkdir()
    write_nifti(refs / "src.nii.gz", ct_like(7), AFFINE)
    assert _import(ds, folder, "--fold", "0", "--reference", str(refs)) == 0
    assert "reference statistics: 5 normalisation layers from 1 volume(s) (src)" in capsys.readouterr().out
    assert main(["rank", "--datastore", str(ds), "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert "reference_stats" in out
    assert len([line for line in out.splitlines() if line.strip().endswith("*")]) == 1

    store = Datastore(ds)
    config = store.models.load().config
    label = (ct_like(0) > 60).astype(np.uint8) * 2
    store.save_label("ct0", LabelTag.FINAL, label, AFFINE, config.label_values)
    assert main(["adapt", "--datastore", str(ds), "--steps", "1"]) == 0
    assert "new active model v0002 (parent v0001)" in capsys.readouterr().out
    child = json.loads((ds / "models" / "v0002" / "config.json").read_text())
    assert (
        child["nnunet"]["configuration"] == "3d_fullres" and (ds / "models" / "v0002" / "reference_stats.npz").exists()
    )
    assert main(["infer", "--datastore", str(ds), "ct1"]) == 0


def test_a_label_enters_network_space_as_nnunets_training_preprocessing_brings_it(tmp_path):
    """The image's crop box, transpose and nnU-Net's segmentation resampling, replayed on the label."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = write_results_folder(tmp_path / "results")
    ds = _datastore(tmp_path)
    assert _import(ds, folder, "--fold", "0") == 0
    config = Datastore(ds).models.load().config
    image = ct_like(0)
    label = ((image > 60).astype(np.uint8) + (image > 120)).astype(np.uint8)
    label_path = write_nifti(tmp_path / "lab.nii.gz", label, AFFINE)
    prepared = prepare_image(load_volume(ds / "images" / "ct0.nii.gz"), config)
    ours = prepare_label(load_volume(label_path), config, prepared)
    assert ours.shape == prepared.shape

    plans = json.loads((folder / "plans.json").read_text())
    manager = PlansManager(plans)
    _, seg, _ = DefaultPreprocessor(verbose=False).run_case(
        [str(ds / "images" / "ct0.nii.gz")],
        str(label_path),
        manager,
        manager.get_configuration("3d_fullres"),
        json.loads((folder / "dataset.json").read_text()),
    )
    # nnU-Net marks background outside the image's non-zero mask -1 (ignored by its loss); asfda keeps it 0.
    assert np.array_equal(ours.numpy().astype(np.int16), np.maximum(seg, 0).astype(np.int16))
    with pytest.raises(ValueError, match="needs the prepared image"):
        prepare_label(load_volume(label_path), config)


def test_an_nnunet_version_exports_and_imports_back(tmp_path, capsys):
    ds = _datastore(tmp_path)
    assert _import(ds, write_results_folder(tmp_path / "results"), "--fold", "0") == 0
    assert main(["model", "export", "--datastore", str(ds), "--out", str(tmp_path / "out")]) == 0
    shutil.rmtree(tmp_path / "results")
    other = tmp_path / "other"
    assert main(["model", "import", "--datastore", str(other), "--from", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    first, second = Datastore(ds).models.load(), Datastore(other).models.load()
    assert second.config.nnunet == first.config.nnunet and second.config.network == "PlainConvUNet"
    for key, value in first.network.state_dict().items():
        assert torch.equal(value, second.network.state_dict()[key])


def _refused(tmp_path, capsys, folder, *extra):
    ds = tmp_path / "ds"
    assert _import(ds, folder, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("asfda model import: error:")
    assert not ModelStore(ds / "models").versions()  # nothing stored
    return err


def _edit_json(folder: Path, name: str, edit) -> None:
    data = json.loads((folder / name).read_text())
    edit(data)
    (folder / name).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "breaks, reason",
    [
        (lambda f: (f / "plans.json").unlink(), "plans.json missing in"),
        (lambda f: (f / "dataset.json").unlink(), "dataset.json missing in"),
        (
            lambda f: (f / "fold_0" / "checkpoint_final.pth").rename(f / "fold_0" / "checkpoint_best.pth"),
            "fold_0 has no checkpoint_final.pth (it has checkpoint_best.pth: choose with --checkpoint",
        ),
        (lambda f: shutil.rmtree(f / "fold_0"), "no fold_* folder in"),
        (
            lambda f: _edit_json(
                f,
                "plans.json",
                lambda p: p["configurations"]["3d_fullres"]["architecture"].update(
                    network_class_name="dynamic_network_architectures.architectures.primus.Primus"
                ),
            ),
            "plans.json network 'dynamic_network_architectures.architectures.primus.Primus' is not one asfda builds",
        ),
        (
            lambda f: _edit_json(
                f,
                "plans.json",
                lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(nonlin="os.system"),
            ),
            "arch_kwargs.nonlin = 'os.system' is not a torch.nn class",
        ),
        (
            lambda f: _edit_json(
                f, "plans.json", lambda p: p["configurations"]["3d_fullres"].update(inherits_from="3d_lowres")
            ),
            "plans.json configurations inherit in a circle: 3d_fullres -> 3d_lowres -> 3d_fullres",
        ),
        (
            lambda f: _edit_json(f, "dataset.json", lambda d: d.update(channel_names={"0": "T1", "1": "T2"})),
            "asfda reads one volume per case, the model needs 2 input channels",
        ),
        (
            lambda f: _edit_json(f, "dataset.json", lambda d: d.update(labels={"background": 0, "tumor": [1, 2]})),
            "dataset.json labels are regions",
        ),
    ],
)
def test_folders_asfda_cannot_honour_are_refused_in_one_line(tmp_path, capsys, breaks, reason):
    folder = write_results_folder(tmp_path / "results")
    breaks(folder)
    assert reason in _refused(tmp_path, capsys, folder, "--fold", "0" if "no fold_*" not in reason else "all")


@pytest.mark.parametrize(
    "configuration, reason",
    [
        ("3d_cascade_fullres", "is a cascade stage (it needs '3d_lowres''s segmentation as input)"),
        ("2d", "configuration '2d' is 2D: asfda predicts 3D patches"),
    ],
)
def test_cascade_and_2d_configurations_are_refused(tmp_path, capsys, configuration, reason):
    assert reason in _refused(tmp_path, capsys, write_results_folder(tmp_path / "r", configuration=configuration))


def test_a_trainer_that_may_build_its_own_network_is_refused(tmp_path, capsys):
    folder = write_results_folder(tmp_path / "r", trainer="nnUNetTrainerUMambaBot")
    assert "trainer 'nnUNetTrainerUMambaBot' may build its own network" in _refused(tmp_path, capsys, folder)


def test_a_checkpoint_that_needs_code_to_unpickle_is_refused(tmp_path, capsys):
    folder = write_results_folder(tmp_path / "r")
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    checkpoint["logging"] = {"callback": Path("/etc")}  # any class outside the weights-only allow-list
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    assert "cannot be read without running code" in _refused(tmp_path, capsys, folder)


def test_a_checkpoint_saved_with_numpy_1_imports(tmp_path, capsys):
    """Checkpoints trained before numpy 2 name its scalars numpy.core.multiarray.scalar (now numpy._core)."""
    import zipfile

    folder = write_results_folder(tmp_path / "r")
    path = folder / "fold_0" / "checkpoint_final.pth"
    with zipfile.ZipFile(path) as old:
        entries = {name: old.read(name) for name in old.namelist()}
    pickled = next(name for name in entries if name.endswith("data.pkl"))
    assert b"numpy._core.multiarray" in entries[pickled]
    entries[pickled] = entries[pickled].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with zipfile.ZipFile(path, "w") as new:
        for name, data in entries.items():
            new.writestr(name, data)
    assert _import(tmp_path / "ds", folder) == 0
    assert capsys.readouterr().out.startswith("imported v0001: nnU-Net checkpoint_final.pth x 1 fold(s)")


def test_the_best_checkpoint_is_chosen_with_checkpoint_best(tmp_path, capsys):
    folder = write_results_folder(tmp_path / "r", checkpoint="checkpoint_best.pth")
    assert _import(tmp_path / "ds", folder, "--checkpoint", "best") == 0
    assert "(nnUNetTrainer, checkpoint_best.pth)" in capsys.readouterr().out
    assert Datastore(tmp_path / "ds").models.load().config.nnunet["checkpoint"] == "checkpoint_best.pth"


def test_nnunet_trainer_variants_of_schedule_and_mirroring_import(tmp_path, capsys):
    folder = write_results_folder(tmp_path / "r", trainer="nnUNetTrainer_4000epochs_NoMirroring", mirror_axes=None)
    assert _import(tmp_path / "ds", folder) == 0
    assert "no mirroring (the checkpoint allows none)" in capsys.readouterr().out


def test_without_the_nnunet_install_the_engine_imports_and_refuses_in_one_line(tmp_path):
    folder = write_results_folder(tmp_path / "r")
    script = (
        "import sys\n"
        "for name in ('nnunetv2', 'dynamic_network_architectures', 'acvl_utils', 'batchgenerators'):\n"
        "    sys.modules[name] = None  # import fails, find_spec says missing\n"
        "import asfda.cli, asfda.models.preprocess, asfda.models.inference, asfda.loop.infer\n"
        "from asfda.cli import main\n"
        f"sys.exit(main(['model', 'import', '--datastore', {str(tmp_path / 'ds')!r}, '--nnunet', {str(folder)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "\n" not in err
    assert (
        "models need the package 'nnunetv2', which is not installed: install it with `scripts/setup.sh nnunet`" in err
    )
    assert not (tmp_path / "ds").exists()
