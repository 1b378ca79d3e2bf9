import numpy as np
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import Geometry, load_volume
from asfda.loop.infer import predict_case
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.models.preprocess import prepare_image, to_original_space
from engine_helpers import blob, tiny_config, write_nifti


def test_resampled_and_reoriented_maps_come_back_on_the_original_grid(tmp_path):
    label, image = blob(7)
    affine = np.array([[-1.2, 0, 0, 40.0], [0, 0, 2.5, -20.0], [0, 0.9, 0, 7.0], [0, 0, 0, 1]])  # LIA-like, anisotropic
    volume = load_volume(write_nifti(tmp_path / "img.nii.gz", image, affine))
    config = tiny_config()
    config.spacing = [2.0, 2.0, 2.0]
    prepared = prepare_image(volume, config)
    assert np.allclose(Geometry.of(prepared).spacing, [2.0, 2.0, 2.0])
    label_volume = load_volume(write_nifti(tmp_path / "lab.nii.gz", label.astype(np.float32), affine))
    from asfda.models.preprocess import prepare_label

    mapped = prepare_label(label_volume, config)
    onehot = np.stack([1 - np.asarray(mapped[0]), np.asarray(mapped[0])]).astype(np.float32)
    import torch

    back = to_original_space(prepared, torch.as_tensor(onehot), config)
    assert back.shape[1:] == label.shape
    recovered = np.asarray(back.argmax(0))
    agreement = (recovered == label).mean()
    assert agreement > 0.97, agreement


def test_predict_case_writes_labels_on_the_image_geometry(tmp_path):
    store = Datastore(tmp_path / "ds")
    label, image = blob(8)
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    write_nifti(store.images_dir / "c1.nii.gz", image, affine)
    config = tiny_config()
    config.spacing = [1.0, 1.0, 1.0]
    store.models.publish(build_network(config), config, parent=None)
    model = store.models.load()
    path = predict_case(store, "c1", model, Predictor(model.network, model.config))
    prediction = load_volume(path)
    assert np.allclose(Geometry.of(prediction).affine, store.geometry("c1").affine)
    assert set(np.unique(np.asarray(prediction)).tolist()) <= {0, 1}
    assert store.state.labels(LabelTag.PREDICTION.value)[0].model_version == "v0001"
