"""The paper-recipe configs (configs/papers/): each selects its row's loss, sampler and schedule,
the results table (docs/results.md) lists each with its header's target, and each stage 2 loads
the output of a stage-1 config.

The expected schedules are computed here from the papers' epochs (iterations = epochs x annotated
training images / batch, rounded to the nearest, halves up), not read from the configs."""
import glob
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple

import pytest
from detectron2.config import get_cfg

from lt_det.config import add_lt_det_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPERS = os.path.join(REPO, "configs", "papers")
RESULTS = os.path.join(REPO, "docs", "results.md")
V1, V05 = 99_388, 56_740  # annotated training images: LVIS v1, LVIS v0.5


def iterations(epochs: float, images: int, batch: int = 16) -> int:
    return int(Fraction(epochs) * images / batch + Fraction(1, 2))


def mmdet_schedule(epochs: int, steps: Tuple[int, int], images: int, lr: float, batch: int = 16) -> dict:
    return dict(max_iter=iterations(epochs, images, batch), lr_steps=tuple(iterations(e, images, batch) for e in steps),
                batch=batch, lr=lr)


GOL_1X = mmdet_schedule(12, (8, 11), V1, 0.02)
GOL_2X = mmdet_schedule(24, (16, 22), V1, 0.02)
GOL_2X_V05 = mmdet_schedule(24, (16, 22), V05, 0.02)
BAGS_12EP = mmdet_schedule(12, (8, 11), V05, 0.01)
BAGS_COCO_LT_12EP = mmdet_schedule(12, (8, 11), 9_100, 0.01)  # the paper's 9,100 COCO-LT images
EQL_PAPER = mmdet_schedule(25, (16, 22), V05, 0.04, batch=32)
D2_1X = dict(max_iter=90_000, lr_steps=(60_000, 80_000), batch=16, lr=0.02)
# BALMS: 25 epochs, steps at detectron2's 2/3 and 8/9 (the report gives none); stage 2: 10 epochs,
# steps at 11/22 and 18/22 as the released 22k-iteration stage 2.
BALMS_25EP = dict(max_iter=iterations(25, V1), lr_steps=(int(iterations(25, V1) * 2 / 3),
                                                         int(iterations(25, V1) * 8 / 9)), batch=16, lr=0.02)
_S2 = iterations(10, V1)
BALMS_10EP = dict(max_iter=_S2, lr_steps=(round(_S2 * 11 / 22), round(_S2 * 18 / 22)), batch=16, lr=0.02)

RANDOM, RFS, CLASS_AWARE = "TrainingSampler", "RepeatFactorTrainingSampler", "ClassAwareSampler"
CLASSIFIER = ["roi_heads.box_predictor.cls_score"]
ALL_BUT_CONV1_CONV2 = ["backbone.bottom_up.res3", "backbone.bottom_up.res4", "backbone.bottom_up.res5",
                       "backbone.fpn_*", "proposal_generator", "roi_heads"]


@dataclass(frozen=True)
class Row:
    loss: str
    schedule: dict
    sampler: str = RANDOM
    rfs_t: Optional[float] = None
    activation: Optional[str] = None  # checked when given
    tail_threshold: Optional[float] = None
    dataset: str = "lvis_v1_train"
    depth: int = 50
    mask_on: bool = True
    enh: bool = False  # GOL's NMS 0.3 + cosine mask predictor (t = 20)
    trainable: Optional[Tuple[str, ...]] = None  # a decoupled stage's DECOUPLED.TRAINABLE
    classifier_init: Optional[str] = None
    others_ratio: Optional[float] = None  # BAGS's beta
    threshold_function: str = "step"  # EQL's T


def gol(loss, schedule=GOL_1X, rfs=False, **kw):
    return Row(loss, schedule, sampler=RFS if rfs else RANDOM, rfs_t=0.001 if rfs else None, **kw)


def gol2x(loss, rfs=False, act=None, enh=False, depth=50):
    lam = 0.0011 if loss in ("eql", "droploss") else None
    return gol(loss, GOL_2X, rfs, activation=act, tail_threshold=lam, enh=enh, depth=depth)


def gol_v05(row: Row, tail_threshold=None) -> Row:
    kw = dict(row.__dict__, schedule=GOL_2X_V05, dataset="lvis_v0.5_train")
    if tail_threshold:
        kw["tail_threshold"] = tail_threshold
    return Row(**kw)


ACSL = dict(schedule=GOL_1X, trainable=tuple(CLASSIFIER), classifier_init="keep")


def balms(loss, stage2=None, depth=50, sigmoid_stage1=False):
    if stage2 is None:
        return Row(loss, BALMS_25EP, RFS, 0.001, depth=depth)
    sampler, t = (CLASS_AWARE, None) if stage2 in ("cRT", "LWS") else (RFS, 0.001)
    trainable = ("roi_heads.box_predictor.cls_score.scale",) if stage2 == "LWS" else tuple(CLASSIFIER)
    init = {"cRT": "reinit", "LWS": "auto"}.get(stage2, "keep")
    return Row(loss, BALMS_10EP, sampler, t, depth=depth, trainable=trainable, classifier_init=init,
               tail_threshold=0.0011 if loss == "eql" else None)


def bags(loss, trainable=CLASSIFIER, init="auto", beta=None, mask_on=False):
    return Row(loss, BAGS_12EP, RANDOM, dataset="lvis_v0.5_train", mask_on=mask_on,
               trainable=tuple(trainable) if trainable else None, classifier_init=init if trainable else None,
               others_ratio=beta)


HEAD = ["roi_heads.box_head", "roi_heads.box_predictor.cls_score"]
EQL_V05 = dict(dataset="lvis_v0.5_train", tail_threshold=0.00177)

EXPECTED = {
    # GOL Table 1: three activations, random sampler and RFS, 1x
    "GOL/mask_rcnn_R_50_FPN_1x_softmax_random.yaml": gol("softmax_ce"),
    "GOL/mask_rcnn_R_50_FPN_1x_sigmoid_random.yaml": gol("sigmoid_ce"),
    "GOL/mask_rcnn_R_50_FPN_1x_gumbel_random.yaml": gol("gumbel_ce"),
    "GOL/mask_rcnn_R_50_FPN_1x_softmax_rfs.yaml": gol("softmax_ce", rfs=True),
    "GOL/mask_rcnn_R_50_FPN_1x_sigmoid_rfs.yaml": gol("sigmoid_ce", rfs=True),
    "GOL/mask_rcnn_R_50_FPN_1x_gumbel_rfs.yaml": gol("gumbel_ce", rfs=True),
    # GOL Table 6: SOTA losses with sigmoid and Gumbel, 1x, random sampler; ACSL decoupled
    **{f"GOL/mask_rcnn_R_50_FPN_1x_{loss}_{act}.yaml": gol(loss, activation=act, tail_threshold=lam)
       for loss, lam in (("eql", 0.0011), ("droploss", 0.0011), ("federated", None)) for act in ("sigmoid", "gumbel")},
    **{f"GOL/mask_rcnn_R_50_FPN_1x_acsl_{act}.yaml": Row("acsl", activation=act, **ACSL) for act in ("sigmoid", "gumbel")},
    # GOL Tables 2 / 5 / 8: the 2x ablation
    "GOL/mask_rcnn_R_50_FPN_2x_softmax_random.yaml": gol2x("softmax_ce"),
    "GOL/mask_rcnn_R_50_FPN_2x_gumbel_random.yaml": gol2x("gumbel_ce"),
    "GOL/mask_rcnn_R_50_FPN_2x_eql_random.yaml": gol2x("eql", act="sigmoid"),
    "GOL/mask_rcnn_R_50_FPN_2x_eql_gumbel_random.yaml": gol2x("eql", act="gumbel"),
    "GOL/mask_rcnn_R_50_FPN_2x_softmax_rfs.yaml": gol2x("softmax_ce", rfs=True),
    "GOL/mask_rcnn_R_50_FPN_2x_gumbel_rfs.yaml": gol2x("gumbel_ce", rfs=True),
    "GOL/mask_rcnn_R_50_FPN_2x_eql_rfs.yaml": gol2x("eql", rfs=True, act="sigmoid"),
    "GOL/mask_rcnn_R_50_FPN_2x_eql_gumbel_rfs.yaml": gol2x("eql", rfs=True, act="gumbel"),
    "GOL/mask_rcnn_R_50_FPN_2x_gol_star.yaml": gol2x("eql", rfs=True, act="gumbel", enh=True),
    "GOL/mask_rcnn_R_50_FPN_2x_gol_random.yaml": gol2x("droploss", act="gumbel", enh=True),
    "GOL/mask_rcnn_R_50_FPN_2x_gol.yaml": gol2x("droploss", rfs=True, act="gumbel", enh=True),
    # GOL Tables 3 / 8: R101 and LVIS v0.5
    "GOL/mask_rcnn_R_101_FPN_2x_softmax_rfs.yaml": gol2x("softmax_ce", rfs=True, depth=101),
    "GOL/mask_rcnn_R_101_FPN_2x_gol_random.yaml": gol2x("droploss", act="gumbel", enh=True, depth=101),
    "GOL/mask_rcnn_R_101_FPN_2x_gol_star.yaml": gol2x("eql", rfs=True, act="gumbel", enh=True, depth=101),
    "GOL/mask_rcnn_R_101_FPN_2x_gol.yaml": gol2x("droploss", rfs=True, act="gumbel", enh=True, depth=101),
    "GOL/lvis_v0.5_mask_rcnn_R_50_FPN_2x_softmax_rfs.yaml": gol_v05(gol2x("softmax_ce", rfs=True)),
    "GOL/lvis_v0.5_mask_rcnn_R_50_FPN_2x_gol.yaml":
        gol_v05(gol2x("droploss", rfs=True, act="gumbel", enh=True), tail_threshold=0.00177),
    # BALMS Table 2, R50 and R101
    **{f"BALMS/mask_rcnn_R_{d}_FPN_25ep_{name}.yaml": row
       for d in (50, 101) for name, row in (
           ("rfs", balms("softmax_ce", depth=d)),
           ("rfs_sigmoid", balms("sigmoid_ce", depth=d)),
           ("rfs_cRT", balms("softmax_ce", "cRT", depth=d)),
           ("rfs_LWS", balms("softmax_ce", "LWS", depth=d)),
           ("rfs_eql_stage2", balms("eql", "EQL", depth=d)),
           ("rfs_balanced_sigmoid_stage2", balms("balanced_sigmoid", "BalancedSigmoid", depth=d)))},
    # BAGS: supplementary Table 1 modes (1)-(4) with beta = 1, the beta = 8 result, re-weighting (6)-(9)
    "BAGS/faster_rcnn_R_50_FPN_softmax.yaml": bags("softmax_ce", trainable=None),
    "BAGS/faster_rcnn_R_50_FPN_bags_beta1_train_fc_cls.yaml": bags("bags", beta=1.0),
    "BAGS/faster_rcnn_R_50_FPN_bags_beta1_train_head.yaml": bags("bags", HEAD, beta=1.0),
    "BAGS/faster_rcnn_R_50_FPN_bags_beta1_tune_head.yaml": bags("bags", HEAD, "keep", beta=1.0),
    "BAGS/faster_rcnn_R_50_FPN_bags_beta1_tune_all.yaml": bags("bags", ALL_BUT_CONV1_CONV2, "keep", beta=1.0),
    "BAGS/faster_rcnn_R_50_FPN_bags.yaml": bags("bags", beta=8.0),
    "BAGS/faster_rcnn_R_50_FPN_reweight_tune_all.yaml": bags("inverse_frequency", ALL_BUT_CONV1_CONV2, "keep"),
    "BAGS/faster_rcnn_R_50_FPN_reweight_fc_cls.yaml": bags("inverse_frequency", init="keep"),
    "BAGS/faster_rcnn_R_50_FPN_focal_tune_all.yaml": bags("focal", ALL_BUT_CONV1_CONV2),
    "BAGS/faster_rcnn_R_50_FPN_focal_fc_cls.yaml": bags("focal"),
    "BAGS/mask_rcnn_R_50_FPN_softmax.yaml": bags("softmax_ce", trainable=None, mask_on=True),
    "BAGS/mask_rcnn_R_50_FPN_bags.yaml": bags("bags", beta=8.0, mask_on=True),
    # BAGS supplementary Table 2: COCO-LT
    **{f"BAGS/coco_lt_{arch}_rcnn_R_50_FPN_{name}.yaml":
       Row(name if name == "bags" else "softmax_ce", BAGS_COCO_LT_12EP, dataset="coco_lt_train",
           mask_on=arch == "mask", trainable=tuple(CLASSIFIER) if name == "bags" else None,
           classifier_init="auto" if name == "bags" else None, others_ratio=8.0 if name == "bags" else None)
       for arch in ("faster", "mask") for name in ("softmax", "bags")},
    # EQL: the released results table (R50, R101) and the paper's recipe
    **{f"EQL/mask_rcnn_R_{d}_FPN_1x_{name}.yaml": row
       for d in (50, 101) for name, row in (
           ("softmax", Row("softmax_ce", D2_1X, depth=d, dataset="lvis_v0.5_train")),
           ("eql", Row("eql", D2_1X, depth=d, **EQL_V05)),
           ("eql_rfs", Row("eql", D2_1X, RFS, 0.0005, depth=d, **EQL_V05)))},
    "EQL/mask_rcnn_R_50_FPN_25ep_softmax.yaml": Row("softmax_ce", EQL_PAPER, dataset="lvis_v0.5_train"),
    "EQL/mask_rcnn_R_50_FPN_25ep_eql_without_exclusion.yaml": Row("eql", EQL_PAPER, **EQL_V05),
    "EQL/mask_rcnn_R_50_FPN_25ep_eql_exponential_decay.yaml": Row("eql", EQL_PAPER, threshold_function="exponential",
                                                                  **EQL_V05),
    "EQL/mask_rcnn_R_50_FPN_25ep_eql_gompertz_decay.yaml": Row("eql", EQL_PAPER, threshold_function="gompertz",
                                                               **EQL_V05),
    **{f"EQL/mask_rcnn_R_{d}_FPN_25ep_{name}.yaml": row
       for d in (50, 101) for name, row in (
           ("sigmoid", Row("sigmoid_ce", EQL_PAPER, depth=d, dataset="lvis_v0.5_train")),
           ("eql", Row("eql", EQL_PAPER, depth=d, **EQL_V05)))},
}


def paper_configs():
    return sorted(os.path.relpath(p, PAPERS) for p in glob.glob(os.path.join(PAPERS, "*", "*.yaml"))
                  if not os.path.basename(p).startswith("Base-"))


def load(rel):
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(os.path.join(PAPERS, rel))
    return cfg


def header(rel):
    with open(os.path.join(PAPERS, rel)) as f:
        first, second = f.readline().rstrip("\n"), f.readline().rstrip("\n")
    assert first.startswith("# Recipe: ") and second.startswith("# Target: "), f"{rel}: no Recipe / Target header"
    return first[len("# Recipe: "):], second[len("# Target: "):]


def test_every_paper_config_has_an_expected_row():
    assert paper_configs() == sorted(EXPECTED)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_config_selects_its_rows_loss_sampler_and_schedule(rel):
    row, cfg = EXPECTED[rel], load(rel)
    loss = cfg.MODEL.LT_LOSS
    assert loss.NAME == row.loss
    if row.activation:
        assert loss.ACTIVATION == row.activation
    if row.tail_threshold:
        assert loss.TAIL_THRESHOLD == pytest.approx(row.tail_threshold)
    assert loss.EQL.EXCLUDE_BACKGROUND == ("without_exclusion" not in rel)
    assert loss.EQL.THRESHOLD_FUNCTION == row.threshold_function
    if row.others_ratio:
        assert loss.BAGS.OTHERS_RATIO == row.others_ratio
    assert cfg.DATALOADER.SAMPLER_TRAIN == row.sampler
    if row.rfs_t is not None:
        assert cfg.DATALOADER.REPEAT_THRESHOLD == pytest.approx(row.rfs_t)
    solver, schedule = cfg.SOLVER, row.schedule
    assert (solver.MAX_ITER, tuple(solver.STEPS)) == (schedule["max_iter"], schedule["lr_steps"])
    assert (solver.IMS_PER_BATCH, solver.BASE_LR) == (schedule["batch"], pytest.approx(schedule["lr"]))
    assert cfg.DATASETS.TRAIN == (row.dataset,)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == {"lvis_v1_train": 1203, "lvis_v0.5_train": 1230, "coco_lt_train": 80}[
        row.dataset]
    assert cfg.MODEL.RESNETS.DEPTH == row.depth and cfg.MODEL.MASK_ON == row.mask_on
    assert (cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST, cfg.MODEL.ROI_MASK_HEAD.COSINE_TEMPERATURE) == (
        (0.3, 20.0) if row.enh else (0.5, 0.0))
    assert cfg.DECOUPLED.ENABLED == (row.trainable is not None)
    if row.trainable is not None:
        assert tuple(cfg.DECOUPLED.TRAINABLE) == row.trainable
        assert cfg.DECOUPLED.CLASSIFIER_INIT == row.classifier_init
        assert cfg.DECOUPLED.LWS.ENABLED == (row.trainable == ("roi_heads.box_predictor.cls_score.scale",))


def test_each_stage_2_loads_a_stage_1_config_output():
    outputs = {load(rel).OUTPUT_DIR: rel for rel in paper_configs()}
    for rel in paper_configs():
        weights = load(rel).MODEL.WEIGHTS
        if weights.startswith("output/"):
            assert os.path.dirname(weights) in outputs, f"{rel} loads {weights}, which no paper config writes"
            assert outputs[os.path.dirname(weights)] != rel


def results_rows():
    with open(RESULTS) as f:
        return [[c.strip() for c in line.strip().strip("|").split("|")] for line in f
                if line.startswith("| ") and "configs/papers/" in line]


def test_results_table_lists_each_config_once_with_its_target():
    rows = results_rows()
    linked = [re.search(r"\(\.\./configs/papers/([^)]+)\)", config).group(1) for _, _, config, _ in rows]
    assert sorted(linked) == paper_configs()
    for (row, target, _, measured), rel in zip(rows, linked):
        recipe, header_target = header(rel)
        assert recipe.endswith(row) and target == header_target.replace(" | ", " / "), rel
        # the measured column holds lt_det's own runs, never the paper's numbers
        assert not measured or measured != target, f"{rel}: the measured column repeats the target"
