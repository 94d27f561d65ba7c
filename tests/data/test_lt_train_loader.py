"""build_lt_train_loader / build_lt_train_sampler: the sampler chosen from the config."""
import itertools

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler

from lt_det.data.build import build_lt_train_loader, build_lt_train_sampler, check_sampler_params
from lt_det.data.samplers import ClassAwareSampler, image_repeat_factors
from lt_det.data.sampling_config import add_sampling_config

TOY = "lt_det_test_toy_train"
# image 0 has no annotation: detectron2's filter drops it, so the sampler indexes 6 images
TOY_CLASSES = [[], [0], [0], [0, 1], [0], [0], [2]]


def toy_dicts():
    return [
        {"image_id": i, "file_name": f"{i}.jpg", "width": 200 if i % 2 else 100, "height": 100,
         "annotations": [{"category_id": c, "bbox": [0, 0, 10, 10], "bbox_mode": 1} for c in classes]}
        for i, classes in enumerate(TOY_CLASSES)
    ]


@pytest.fixture(scope="module")
def toy_dataset():
    DatasetCatalog.register(TOY, toy_dicts)
    MetadataCatalog.get(TOY).set(thing_classes=["a", "b", "c"])
    yield TOY
    DatasetCatalog.remove(TOY)
    MetadataCatalog.remove(TOY)


def cfg_for(sampler, **dataloader):
    cfg = get_cfg()
    add_sampling_config(cfg)
    cfg.DATASETS.TRAIN = (TOY,)
    cfg.DATALOADER.SAMPLER_TRAIN = sampler
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SEED = 5
    for key, value in dataloader.items():
        cfg.DATALOADER[key] = value
    return cfg


def test_repeat_sqrt_key_defaults_to_detectron2_main():
    cfg = get_cfg()
    add_sampling_config(cfg)
    assert cfg.DATALOADER.REPEAT_SQRT is True


@pytest.mark.parametrize("sqrt", [True, False])
def test_rfs_sampler_uses_threshold_and_sqrt_choice(sqrt):
    dicts = toy_dicts()[1:]
    sampler = build_lt_train_sampler(cfg_for("RepeatFactorTrainingSampler", REPEAT_THRESHOLD=0.5, REPEAT_SQRT=sqrt), dicts)
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    # class 1 and 2 are in 1 of 6 images: r = (0.5 * 6)^p, p = 1/2 or 1
    expected = image_repeat_factors(dicts, 0.5, sqrt=sqrt)
    assert expected.max().item() == pytest.approx(3 ** 0.5 if sqrt else 3.0)
    torch.testing.assert_close(sampler._int_part + sampler._frac_part, expected)


@pytest.mark.parametrize("t", [0.0, -0.001, 1.5])
def test_rfs_threshold_outside_0_1_is_refused(t):
    """t is compared with image frequencies in (0, 1]: 1 is the largest meaningful value."""
    with pytest.raises(ValueError, match=rf"DATALOADER.REPEAT_THRESHOLD.*must be in \(0, 1\], got {t}"):
        build_lt_train_sampler(cfg_for("RepeatFactorTrainingSampler", REPEAT_THRESHOLD=t), toy_dicts()[1:])
    assert isinstance(build_lt_train_sampler(cfg_for("RepeatFactorTrainingSampler", REPEAT_THRESHOLD=1.0),
                                             toy_dicts()[1:]), RepeatFactorTrainingSampler)


def test_exact_resume_loader_refuses_an_rfs_threshold_when_built(toy_dataset):
    """The resumable stream builds its sampler when the first batch is drawn; its parameters are
    checked when the loader is built, and by check_sampler_params alone (the trainers' start check)."""
    cfg = cfg_for("RepeatFactorTrainingSampler", REPEAT_THRESHOLD=1.5, EXACT_RESUME=True)
    with pytest.raises(ValueError, match=r"DATALOADER.REPEAT_THRESHOLD.*must be in \(0, 1\], got 1.5"):
        build_lt_train_loader(cfg, mapper=lambda d: d)
    with pytest.raises(ValueError, match=r"DATALOADER.REPEAT_THRESHOLD.*got 1.5"):
        check_sampler_params("RepeatFactorTrainingSampler", 1.5, exact_resume=True)
    with pytest.raises(ValueError, match="Exact resume.*not 'RandomSubsetTrainingSampler'"):
        check_sampler_params("RandomSubsetTrainingSampler", 0.001, exact_resume=True)
    check_sampler_params("TrainingSampler", 1.5, exact_resume=True)  # t is RFS's alone


def test_class_aware_sampler_from_cfg_is_seeded_by_cfg_seed():
    dicts = toy_dicts()[1:]
    sampler = build_lt_train_sampler(cfg_for("ClassAwareSampler"), dicts)
    reference = ClassAwareSampler.from_dataset_dicts(dicts, seed=5)
    assert list(itertools.islice(sampler, 500)) == list(itertools.islice(reference, 500))


def test_detectron2_samplers_are_left_to_detectron2_and_unknown_names_fail():
    assert build_lt_train_sampler(cfg_for("TrainingSampler"), toy_dicts()) is None
    with pytest.raises(ValueError, match="'ClassAware'.*ClassAwareSampler"):
        build_lt_train_sampler(cfg_for("ClassAware"), toy_dicts())


@pytest.mark.parametrize("sampler", ["ClassAwareSampler", "RepeatFactorTrainingSampler", "TrainingSampler"])
def test_loader_indexes_the_filtered_list_with_aspect_ratio_grouping(toy_dataset, sampler):
    loader = build_lt_train_loader(cfg_for(sampler, REPEAT_THRESHOLD=0.5), mapper=lambda d: d)
    batches = list(itertools.islice(iter(loader), 60))
    assert all(len(b) == 2 and len({d["width"] for d in b}) == 1 for b in batches)
    image_ids = {d["image_id"] for b in batches for d in b}
    assert 0 not in image_ids and image_ids == set(range(1, len(TOY_CLASSES)))
