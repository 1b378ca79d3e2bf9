import numpy as np
import pytest
import torch
from asfda.adapt.finetune import Cancelled, FinetuneOptions, TrainingItem, finetune
from asfda.adapt.validation_gate import GateOptions
from asfda.data.datastore import Datastore, LabelTag
from asfda.io.volumes import load_volume
from asfda.loop.adapt import AdaptOptions, adapt_datastore, dice_per_class
from asfda.loop.rank import rank_pool
from asfda.models.inference import Predictor
from asfda.models.networks import build_network
from asfda.models.voxel_maps import pseudo_label
from asfda.query.strategies import RankingOptions, Strategy
from engine_helpers import blob, shifted, tiny_config, write_nifti


def _item(case_id, image, label):
    z = (image - image.mean()) / image.std()  # the zscore the model config applies
    return TrainingItem(case_id, torch.as_tensor(z[None]), torch.as_tensor(label[None].astype(np.int64)))


@pytest.fixture(scope="module")
def source_model():
    config = tiny_config()
    torch.manual_seed(0)
    network = build_network(config)
    items = [_item(f"s{i}", blob(i)[1], blob(i)[0]) for i in range(8)]
    finetune(network, config.roi_size, items, [], FinetuneOptions(steps=60, learning_rate=3e-3, seed=0))
    return config, network


def _target(seeds):
    return [_item(f"t{s}", shifted(blob(s)[1], blob(s)[0], s), blob(s)[0]) for s in seeds]


def _dice(network, config, items):
    return dice_per_class(network, lambda n: Predictor(n, config), items, config.out_channels)


def test_fine_tuning_on_two_target_labels_improves_dice_on_the_shifted_set(source_model):
    import copy

    config, source = source_model
    test = _target(range(200, 206))
    before = _dice(source, config, test)
    assert _dice(source, config, [_item("s", blob(300)[1], blob(300)[0])]) > 0.8  # the source model works
    adapted = copy.deepcopy(source)
    finetune(adapted, config.roi_size, _target([50, 51]), [], FinetuneOptions(steps=40, learning_rate=2e-3, seed=1))
    after = _dice(adapted, config, test)
    assert after > before + 0.2, (before, after)


def test_pseudo_labels_mask_low_confidence_voxels():
    probs = torch.tensor([[0.95, 0.6, 0.1], [0.05, 0.4, 0.9]]).reshape(2, 3, 1, 1)
    label, mask = pseudo_label(probs, voxel_confidence=0.9)
    assert label.flatten().tolist() == [0, 0, 1] and mask.flatten().tolist() == [True, False, True]


def test_masked_voxels_do_not_move_the_model():
    config = tiny_config()
    torch.manual_seed(0)
    network = build_network(config)
    label, image = blob(1)
    labeled = [_item("a", image, label)]
    masked_out = TrainingItem(
        "p", labeled[0].image, 1 - labeled[0].label, torch.zeros_like(labeled[0].label, dtype=torch.bool)
    )
    import copy

    with_pseudo, without = copy.deepcopy(network), copy.deepcopy(network)
    options = FinetuneOptions(steps=3, seed=0, flip_augment=False, batch_size=1)
    finetune(with_pseudo, config.roi_size, labeled, [masked_out], options)
    finetune(without, config.roi_size, labeled, [], options)
    for a, b in zip(with_pseudo.parameters(), without.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_cancel_stops_training():
    config = tiny_config()
    label, image = blob(1)
    with pytest.raises(Cancelled):
        finetune(
            build_network(config),
            config.roi_size,
            [_item("a", image, label)],
            [],
            FinetuneOptions(steps=50),
            should_stop=lambda: True,
        )


def test_rank_then_adapt_on_a_datastore_publishes_a_child_version(tmp_path, source_model):
    config, network = source_model
    store = Datastore(tmp_path / "ds")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    truth = {}
    for i in range(8):
        label, image = blob(400 + i)
        case = f"case{i:02d}"
        write_nifti(store.images_dir / f"{case}.nii.gz", shifted(image, label, i, 0.3 + 0.1 * i), affine)
        truth[case] = label
    v1 = store.models.publish(network, config, parent=None)
    ranked = rank_pool(store, RankingOptions(strategy=Strategy.ASFDA, k=2)).ranked
    assert len(ranked) == 8 and sum(r.selected for r in ranked) == 2
    stored = store.state.scores("asfda")
    assert [s.rank for s in stored] == list(range(1, 9)) and {s.model_version for s in stored} == {v1}
    picks = [r.case_id for r in ranked if r.selected]
    for case in picks:
        store.save_label(case, LabelTag.FINAL, truth[case], affine, config.label_values, author="test")
    progress = []
    # The validation gate has its own tests (test_validation_gate.py); here the version is published and activated.
    options = AdaptOptions(FinetuneOptions(steps=6), gate=GateOptions(enabled=False))
    result = adapt_datastore(store, options, progress=lambda *a: progress.append(a))
    assert result.parent == v1 and result.version == "v0002" and store.models.active_version() == "v0002"
    assert {p[0] for p in progress} >= {"select", "train"} and progress[-1][1] == progress[-1][2] == 6
    assert result.metrics["labels"] == 2 and result.metrics["pseudo_labels"] == len(result.pseudo_cases)
    assert (tmp_path / "ds" / "models" / "v0001" / "weights.pt").exists()  # the parent is never overwritten
    for case in result.pseudo_cases:
        assert case not in picks and store.case_status(case) == "pseudo"
        pseudo = load_volume(store.label_path(case, LabelTag.PSEUDO))
        assert pseudo.shape == truth[case].shape
    # After adapting, rescoring records the new version: the worklist can tell stale scores apart.
    rank_pool(store, RankingOptions(strategy=Strategy.ASFDA, k=2))
    assert {s.model_version for s in store.state.scores("asfda")} == {"v0002"}
    assert all(r.case_id not in picks for r in rank_pool(store, RankingOptions(k=2)).ranked)


def test_adapt_without_labels_is_a_clear_error(tmp_path, source_model):
    config, network = source_model
    store = Datastore(tmp_path / "ds")
    write_nifti(store.images_dir / "a.nii.gz", blob(1)[1])
    store.models.publish(network, config, parent=None)
    with pytest.raises(ValueError, match="no clinician labels yet"):
        adapt_datastore(store, AdaptOptions())
