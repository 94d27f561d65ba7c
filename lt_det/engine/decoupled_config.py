"""Config keys of decoupled classifier re-training (stage 2: cRT, LWS, DisAlign, Balanced Sigmoid, BAGS),
read by :mod:`lt_det.engine.decoupled`.

Keys detectron2 already has keep their meaning: the stage-1 checkpoint is ``MODEL.WEIGHTS``, the
sampler ``DATALOADER.SAMPLER_TRAIN`` (``"ClassAwareSampler"`` for cRT / LWS, RFS for Balanced
Sigmoid stage 2), the loss lt_det's loss key, the schedule ``SOLVER.*``.
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_decoupled_config"]


def add_decoupled_config(cfg) -> None:
    """Adds ``cfg.DECOUPLED`` (in place)."""
    cfg.DECOUPLED = CN()
    # Stage 2: load the stage-1 checkpoint MODEL.WEIGHTS, freeze all but TRAINABLE, keep every
    # BatchNorm in eval mode. False = an ordinary (stage-1) run.
    cfg.DECOUPLED.ENABLED = False
    # fnmatch globs on full parameter names; a module name matches all its parameters. Default:
    # the classifier only, as cRT's detection recipe (Kang et al.) and BALMS ("parameters named
    # cls_score") train. Wider choices: "roi_heads.box_head" (box head FCs), "roi_heads" (whole
    # head). A pattern that matches nothing is an error.
    cfg.DECOUPLED.TRAINABLE = ["roi_heads.box_predictor.cls_score"]
    # The classifier's weight and bias in stage 2:
    #   "auto":   kept from stage 1 when the stage-2 loss needs the same number of logits, else
    #             freshly initialised by that loss (BAGS: C + 1 + groups; Seesaw: C + 2);
    #   "reinit": always freshly initialised (cRT: Kang et al. re-initialise the classifier);
    #   "keep":   always from stage 1 (an error if the logit count differs).
    # "auto" re-initialises exactly when it must and is BALMS's and BAGS's protocol.
    cfg.DECOUPLED.CLASSIFIER_INIT = "auto"

    # Learnable weight scaling (Kang et al. 2020): a scale s_c per foreground class, init 1, on
    # the frozen stage-1 classifier. Train it with DECOUPLED.TRAINABLE =
    # ["roi_heads.box_predictor.cls_score.scale"] and class-aware sampling (the paper's recipe).
    cfg.DECOUPLED.LWS = CN()
    cfg.DECOUPLED.LWS.ENABLED = False  # True: wrap the classifier in LWS scales for stage 2
    # False (default): z_c = s_c (w_c . x) + b_c, weight rows only (eqlv2's detection variant).
    # True: z_c = s_c (w_c . x + b_c), the whole logit (Kang et al.'s classification code).
    cfg.DECOUPLED.LWS.SCALE_BIAS = False

    # DisAlign (Zhang et al., CVPR 2021): a magnitude α_c and margin β_c per foreground class and a
    # per-RoI confidence on the frozen stage-1 classifier (lt_det.modeling.disalign). Released
    # recipe: DECOUPLED.TRAINABLE = ["roi_heads.box_predictor.cls_score.logit_*",
    # "roi_heads.box_predictor.cls_score.confidence"], MODEL.LT_LOSS.NAME "grw", uniform sampling.
    cfg.DECOUPLED.DISALIGN = CN()
    cfg.DECOUPLED.DISALIGN.ENABLED = False  # True: wrap the classifier in DisAlign's calibration for stage 2
