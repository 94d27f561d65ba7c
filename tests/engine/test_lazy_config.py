"""LazyConfig (Python) configs: every config under configs/lazy/ builds; the lazy demo trains,
evaluates, resumes after a crash and runs stage 2; lazy and YACS configs build the same models and
losses; bad lazy configs are refused with what is missing."""
import glob
import json
import os
import tarfile

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model

import lt_det.lazy
from lt_det.compat import detectron2_flavour
from lt_det.config import add_lt_det_config
from lt_det.data.class_stats import get_class_stats
from lt_det.data.samplers import ClassAwareSampler, image_repeat_factors
from lt_det.engine.lazy_train import check_lazy_config, do_train
from lt_det.losses import build_loss, get_loss_class, list_losses
from lt_det.modeling.fast_rcnn import LTFastRCNNOutputLayers
from lvis_stats import set_lvis_statistics
from tiny_dataset import REPO, TINY_NUM_CLASSES

LAZY = os.path.join(REPO, "configs", "lazy")
DEMO = os.path.join(LAZY, "demo_synthetic_lt.py")
# The configs that need only lt_det and detectron2 (the ViTDet example also needs a detectron2
# main source tree: its own test below).
CONFIGS = sorted(p for p in glob.glob(os.path.join(LAZY, "*.py")))
# The demo shrunk to the tests' tiny set and 2 iterations (detectron2's lazy override syntax).
QUICK = [
    "train.max_iter=2", "train.device=cpu", "train.checkpointer.period=1", "train.log_period=1",
    "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
    f"model.roi_heads.num_classes={TINY_NUM_CLASSES}", "model.roi_heads.box_predictor.test_topk_per_image=50",
    "lr_multiplier.scheduler.values=[1.0]", "lr_multiplier.scheduler.milestones=[]",
]


def load(path, *overrides):
    return LazyConfig.apply_overrides(LazyConfig.load(path), list(overrides))


@pytest.fixture
def lvis_statistics():
    set_lvis_statistics()


def test_there_are_lazy_configs():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"demo_synthetic_lt.py", "demo_synthetic_lt_cRT.py", "mask_rcnn_R_50_FPN_1x_lvis_v1.py",
            "mask_rcnn_R_50_FPN_100ep_LSJ_lvis_v1.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_lazy_config_builds_its_model(path, tiny_dataset_root, lvis_statistics):
    cfg = load(path, "train.device=cpu")
    check_lazy_config(cfg, path)
    if cfg.dataloader.train.dataset.names == "synthetic_lt_train":
        cfg.model.roi_heads.num_classes = TINY_NUM_CLASSES
    model = instantiate(cfg.model)
    predictor = model.roi_heads.box_predictor
    assert isinstance(predictor, LTFastRCNNOutputLayers)
    assert type(predictor.cls_loss) is get_loss_class(cfg.model.roi_heads.box_predictor.cls_loss.name)
    assert predictor.frequency_group is not None  # per-group statistics from the training set
    assert cfg.dataloader.train.sampler in ("TrainingSampler", "RepeatFactorTrainingSampler", "ClassAwareSampler")


def shrink_to_tiny_set(cfg, output_dir):
    """Any lazy config on the tests' tiny set: 128-pixel images, 2 iterations, no pretrained
    weights (none can be downloaded here), fp32, few proposals at test time."""
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    cfg.dataloader.train.mapper.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=(128,), sample_style="choice", max_size=128),
        L(T.RandomFlip)(horizontal=True),
    ]
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]
    return LazyConfig.apply_overrides(cfg, [
        *QUICK, f"train.output_dir={output_dir}", "train.init_checkpoint=", "train.amp.enabled=False",
        "dataloader.train.dataset.names=synthetic_lt_train", "dataloader.test.dataset.names=synthetic_lt_val",
        "model.proposal_generator.post_nms_topk=[200,50]",
    ])


@pytest.mark.parametrize("path", [p for p in CONFIGS if "_cRT" not in p], ids=os.path.basename)
def test_lazy_config_trains_on_the_tiny_set(path, tiny_dataset_root, tmp_path):
    """Each stage-1 lazy config, its recipe kept (backbone, heads, norms, optimizer), trains 2
    iterations and evaluates (the cRT config: test_lazy_stage2_trains_only_the_classifier_from_stage1)."""
    cfg = shrink_to_tiny_set(LazyConfig.load(path), tmp_path)
    do_train(cfg)
    results = json.loads((tmp_path / "metrics_eval.json").read_text())
    assert set(results) == {"bbox", "segm"} and "APr" in results["bbox"]
    assert torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 1


def test_lvis_configs_select_rfs_and_the_schedule(lvis_statistics):
    one_x = load(os.path.join(LAZY, "mask_rcnn_R_50_FPN_1x_lvis_v1.py"))
    assert one_x.dataloader.train.sampler == "RepeatFactorTrainingSampler"
    assert one_x.dataloader.train.repeat_threshold == 0.001 and one_x.dataloader.train.repeat_sqrt
    assert one_x.train.max_iter == 90000 and list(one_x.lr_multiplier.scheduler.milestones) == [60000, 80000]
    assert one_x.dataloader.train.total_batch_size == 16 and one_x.optimizer.lr == 0.02
    lsj = load(os.path.join(LAZY, "mask_rcnn_R_50_FPN_100ep_LSJ_lvis_v1.py"))
    assert lsj.train.max_iter == 156250 and lsj.dataloader.train.total_batch_size == 64
    assert lsj.train.amp.enabled and lsj.model.backbone.norm == "SyncBN" and lsj.train.init_checkpoint == ""


@pytest.mark.parametrize("lazy_name, yaml_name", [
    ("demo_synthetic_lt.py", "demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml"),
    ("mask_rcnn_R_50_FPN_1x_lvis_v1.py", "LVISv1/mask_rcnn_R_50_FPN_1x.yaml"),
])
def test_lazy_and_yacs_configs_build_the_same_model(lazy_name, yaml_name, tiny_dataset_root, lvis_statistics):
    """Same parameter and buffer names and shapes, same loss, same test settings."""
    lazy = load(os.path.join(LAZY, lazy_name), "train.device=cpu")
    yacs = get_cfg()
    add_lt_det_config(yacs)
    yacs.merge_from_file(os.path.join(REPO, "configs", yaml_name))
    yacs.MODEL.DEVICE = "cpu"
    if yacs.DATASETS.TRAIN == ("synthetic_lt_train",):
        yacs.MODEL.ROI_HEADS.NUM_CLASSES = lazy.model.roi_heads.num_classes = TINY_NUM_CLASSES
    a, b = instantiate(lazy.model), build_model(yacs)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    pa, pb = a.roi_heads.box_predictor, b.roi_heads.box_predictor
    assert (pa.test_score_thresh, pa.test_nms_thresh, pa.test_topk_per_image) == (
        pb.test_score_thresh, pb.test_nms_thresh, pb.test_topk_per_image)
    assert type(pa.cls_loss) is type(pb.cls_loss)
    for get in (lambda m: m.roi_heads.batch_size_per_image, lambda m: m.roi_heads.positive_fraction,
                lambda m: m.proposal_generator.pre_nms_topk, lambda m: m.proposal_generator.post_nms_topk,
                lambda m: m.proposal_generator.batch_size_per_image, lambda m: m.proposal_generator.nms_thresh,
                lambda m: m.backbone.size_divisibility, lambda m: m.input_format):
        assert get(a) == get(b)
    for x, y in zip(a.proposal_generator.anchor_generator.cell_anchors, b.proposal_generator.anchor_generator.cell_anchors):
        assert torch.equal(x, y)
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]  # freeze_at
    assert [m.__class__ for m in a.modules()] == [m.__class__ for m in b.modules()]
    assert a.pixel_mean.flatten().tolist() == b.pixel_mean.flatten().tolist()
    assert a.pixel_std.flatten().tolist() == b.pixel_std.flatten().tolist()


@pytest.mark.parametrize("name", list_losses())
def test_lt_loss_builds_what_build_loss_builds(name, tiny_dataset_root):
    """Every registered loss: same class, same state (statistics buffers) and same settings from
    lt_det.lazy.lt_loss as from the YACS keys' defaults."""
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.MODEL.LT_LOSS.NAME = name
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = TINY_NUM_CLASSES
    cfg.DATASETS.TRAIN = ("synthetic_lt_train",)
    yacs = build_loss(cfg, get_class_stats("synthetic_lt_train"))
    lazy = lt_det.lazy.lt_loss(name, TINY_NUM_CLASSES, "synthetic_lt_train")
    assert type(lazy) is type(yacs)
    assert lazy.state_dict().keys() == yacs.state_dict().keys()
    for key, value in yacs.state_dict().items():
        assert torch.equal(lazy.state_dict()[key], value), key
    plain = {k: v for k, v in vars(yacs).items() if isinstance(v, (int, float, str, bool, tuple, type(None)))}
    assert {k: vars(lazy)[k] for k in plain} == plain


def test_lt_loss_overrides_and_bad_arguments(tiny_dataset_root):
    assert lt_det.lazy.lt_loss("seesaw", TINY_NUM_CLASSES, p=0.5).p == 0.5
    with pytest.raises(TypeError, match=r"\['not_an_argument'\] are not arguments of SeesawLoss; valid: \['p', 'q'\]"):
        lt_det.lazy.lt_loss("seesaw", TINY_NUM_CLASSES, not_an_argument=1)
    with pytest.raises(KeyError, match="Unknown loss 'nope'.*Registered losses: .*seesaw"):
        lt_det.lazy.lt_loss("nope", TINY_NUM_CLASSES)
    with pytest.raises(KeyError, match="lt_loss\\('eql'\\) needs per-class training statistics: pass train_datasets"):
        lt_det.lazy.lt_loss("eql", TINY_NUM_CLASSES)


@pytest.mark.parametrize("sampler, expected", [("RepeatFactorTrainingSampler", RepeatFactorTrainingSampler),
                                               ("ClassAwareSampler", ClassAwareSampler)])
def test_lazy_train_loader_samples_as_configured(sampler, expected, tiny_dataset_root, monkeypatch):
    """The sampler is built over the same dataset list the loader indexes, RFS with the
    configured t."""
    seen = {}
    monkeypatch.setattr(lt_det.lazy, "build_detection_train_loader", lambda **kwargs: seen.update(kwargs))
    cfg = load(DEMO, *QUICK, f"dataloader.train.sampler={sampler}", "dataloader.train.repeat_threshold=0.1")
    instantiate(cfg.dataloader.train)
    assert isinstance(seen["sampler"], expected)
    if expected is RepeatFactorTrainingSampler:
        factors = seen["sampler"]._int_part + seen["sampler"]._frac_part  # detectron2's split of the factors
        torch.testing.assert_close(factors, image_repeat_factors(seen["dataset"], 0.1, sqrt=True))
        assert (factors > 1).any()


def test_train_net_trains_and_evaluates_a_lazy_config(train_net, tmp_path):
    out = tmp_path / "lazy"
    log = train_net("--config-file", DEMO, *QUICK, f"train.output_dir={out}",
                    "model.roi_heads.box_predictor.cls_loss.name=eqlv2")
    assert "copypaste: AP,AP50,AP75,APs,APm,APl,APr,APc,APf" in log
    results = json.loads((out / "metrics_eval.json").read_text())
    assert set(results) == {"bbox", "segm"} and "APr" in results["bbox"]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert "roi_heads.box_predictor.cls_loss.pos_grad" in final["model"]  # EQLv2's statistics: the loss is eqlv2
    # --eval-only on the trained weights gives the same numbers
    eval_out = tmp_path / "eval"
    train_net("--config-file", DEMO, "--eval-only", *QUICK, f"train.output_dir={eval_out}",
              "model.roi_heads.box_predictor.cls_loss.name=eqlv2", f"train.init_checkpoint={out / 'model_final.pth'}")
    assert json.loads((eval_out / "metrics_eval.json").read_text()) == results


def test_lazy_crash_checkpoint_then_resume_finishes(tiny_dataset_root, tmp_path, monkeypatch):
    cfg = load(DEMO, *QUICK, "train.max_iter=3", "train.checkpointer.period=100", f"train.output_dir={tmp_path}")
    run_step = SimpleTrainer.run_step

    def fail_at_iteration_2(self):
        if self.iter == 2:
            raise RuntimeError("injected failure")
        run_step(self)

    monkeypatch.setattr(SimpleTrainer, "run_step", fail_at_iteration_2)
    with pytest.raises(RuntimeError, match="injected failure"):
        do_train(cfg)
    crash = torch.load(tmp_path / "model_crash.pth", map_location="cpu", weights_only=False)
    assert crash["iteration"] == 1 and "optimizer" in crash["trainer"]
    assert not (tmp_path / "model_final.pth").exists()
    monkeypatch.setattr(SimpleTrainer, "run_step", run_step)
    do_train(load(DEMO, *QUICK, "train.max_iter=3", f"train.output_dir={tmp_path}"), resume=True)
    assert torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 2


def test_lazy_stage2_trains_only_the_classifier_from_stage1(tiny_dataset_root, tmp_path):
    stage1_dir, stage2_dir = tmp_path / "stage1", tmp_path / "stage2"
    do_train(load(DEMO, *QUICK, f"train.output_dir={stage1_dir}"))
    stage1 = torch.load(stage1_dir / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    cfg = load(os.path.join(LAZY, "demo_synthetic_lt_cRT.py"), *QUICK, f"train.output_dir={stage2_dir}",
               f"train.init_checkpoint={stage1_dir / 'model_final.pth'}")
    assert cfg.dataloader.train.sampler == "ClassAwareSampler"
    do_train(cfg)
    stage2 = torch.load(stage2_dir / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    changed = {k for k in stage1 if not torch.equal(stage1[k], stage2[k])}
    # the classifier re-initialised and trained; every other tensor (BatchNorm statistics included) is stage 1's
    assert changed == {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"}


def test_lazy_stage2_can_wrap_the_classifier_in_disalign(tiny_dataset_root):
    from lt_det.engine.lazy_train import build_lazy_model
    from lt_det.modeling.disalign import DisAlignLinear

    cfg = load(os.path.join(LAZY, "demo_synthetic_lt_cRT.py"), *QUICK, "decoupled.disalign.enabled=True",
               "decoupled.classifier_init=keep",
               "decoupled.trainable=['roi_heads.box_predictor.cls_score.logit_*']")
    model = build_lazy_model(cfg)
    assert isinstance(model.roi_heads.box_predictor.cls_score, DisAlignLinear)
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == [
        "roi_heads.box_predictor.cls_score.logit_bias", "roi_heads.box_predictor.cls_score.logit_scale"]


@pytest.mark.parametrize("remove, named", [
    ("dataloader.evaluator", "dataloader.evaluator (the evaluator (lt_det.lazy.lvis_evaluator))"),
    ("train.max_iter", "train.max_iter (the number of iterations)"),
    ("model.roi_heads.box_predictor.cls_loss", "model.roi_heads.box_predictor.cls_loss (lt_det's box predictor"),
    ("lr_multiplier", "lr_multiplier (the learning-rate schedule"),
])
def test_lazy_config_without_a_required_part_names_it(remove, named):
    cfg = load(DEMO)
    parent, _, key = remove.rpartition(".")
    node = cfg
    for part in parent.split(".") if parent else []:
        node = node[part]
    del node[key]
    with pytest.raises(ValueError, match="lacks what lt_det's LazyConfig training reads") as e:
        check_lazy_config(cfg, "demo")
    assert named in str(e.value)


def test_incomplete_decoupled_node_is_named():
    cfg = load(os.path.join(LAZY, "demo_synthetic_lt_cRT.py"))
    del cfg.decoupled["lws"]
    with pytest.raises(ValueError, match=r"decoupled\.lws \(stage 2's options\)"):
        check_lazy_config(cfg)


VITDET = os.path.join(LAZY, "vitdet", "mask_rcnn_vitdet_b_100ep_lvis_lt.py")


def test_vitdet_example_without_a_detectron2_checkout_says_what_to_set(monkeypatch):
    monkeypatch.setenv("DETECTRON2_DIR", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="set DETECTRON2_DIR to a detectron2 main source checkout"):
        LazyConfig.load(VITDET)


@pytest.mark.skipif(detectron2_flavour() != "main", reason="detectron2 0.6 has no ViT backbone (ViTDet came after it)")
def test_vitdet_lvis_config_with_lt_det_predictor_trains(tiny_dataset_root, tmp_path, monkeypatch):
    """main's ViTDet LVIS config from the pinned detectron2 snapshot, with lt_det's predictor:
    a 2-block ViT at 128 px on the tiny set, 2 iterations, then the LVIS evaluation."""
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    snapshot = glob.glob(os.path.join(REPO, "third_party", "detectron2-main-*.tar.gz"))[0]
    with tarfile.open(snapshot) as tar:
        members = [m for m in tar.getmembers() if "/projects/ViTDet/configs/" in m.name]
        tar.extractall(tmp_path, members=members, filter="data")
    monkeypatch.setenv("DETECTRON2_DIR", str(next(tmp_path.iterdir())))
    cfg = LazyConfig.load(VITDET)
    assert cfg.model.roi_heads.box_predictor.cls_loss.name == "federated"
    assert cfg.dataloader.train.sampler._target_ is RepeatFactorTrainingSampler  # ViTDet's own RFS
    cfg.dataloader.train.mapper.augmentations = [
        L(T.ResizeScale)(min_scale=0.5, max_scale=1.0, target_height=128, target_width=128),
        L(T.FixedSizeCrop)(crop_size=(128, 128), pad=False),
    ]
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]
    cfg = LazyConfig.apply_overrides(cfg, [
        *QUICK[:-2], "train.amp.enabled=False", "train.init_checkpoint=", "train.eval_period=0",
        f"train.output_dir={tmp_path / 'out'}", "dataloader.train.dataset.names=synthetic_lt_train",
        "dataloader.test.dataset.names=synthetic_lt_val", "model.backbone.net.depth=2",
        "model.backbone.square_pad=128", "model.proposal_generator.post_nms_topk=[200,50]",
        "lr_multiplier.scheduler.values=[1.0]", "lr_multiplier.scheduler.milestones=[]",
    ])
    check_lazy_config(cfg, VITDET)
    do_train(cfg)
    results = json.loads((tmp_path / "out" / "metrics_eval.json").read_text())
    assert set(results) == {"bbox", "segm"} and "APr" in results["segm"]
    final = torch.load(tmp_path / "out" / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert final["roi_heads.box_predictor.cls_score.weight"].shape[0] == TINY_NUM_CLASSES + 1  # sigmoid + bg column
    assert any(k.startswith("backbone.net.blocks.1.") for k in final)


def test_unknown_evaluation_backend_is_refused_before_training():
    cfg = load(DEMO, "dataloader.evaluator.backend=lvisapi")
    with pytest.raises(KeyError, match="dataloader.evaluator.backend: Unknown LVIS evaluation backend 'lvisapi'"):
        check_lazy_config(cfg)


def test_lazy_exact_resume_from_a_periodic_checkpoint_ends_with_the_uninterrupted_weights(tiny_dataset_root,
                                                                                          tmp_path):
    opts = [*QUICK, "train.max_iter=4", "train.checkpointer.period=2", "train.seed=3", "train.eval_period=0",
            "dataloader.train.exact_resume=True", "dataloader.train.total_batch_size=3"]
    run = tmp_path / "uninterrupted"
    do_train(load(DEMO, *opts, f"train.output_dir={run}"))
    final = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    (run / "last_checkpoint").write_text("model_0000001.pth")  # what a kill after iteration 1 leaves
    do_train(load(DEMO, *opts, f"train.output_dir={run}"), resume=True)
    resumed = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(resumed[k], v) for k, v in final.items())
