"""cRT stage 2 of the lazy demo (the YACS configs/demo/mask_rcnn_R_18_FPN_synthetic_lt_cRT.yaml):
re-initialise and re-train the stage-1 classifier alone, class-aware sampling, softmax CE.
Schedule: LVIS's 22k / 90k of a 1x, applied to the demo's 800-iteration 1x = 196 iterations.

    python train_net.py --config-file configs/lazy/demo_synthetic_lt.py        # stage 1
    python train_net.py --config-file configs/lazy/demo_synthetic_lt_cRT.py    # stage 2
"""
from .demo_synthetic_lt import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401  (the config's parts)

# Stage 2 (lt_det.engine.decoupled; the YACS DECOUPLED keys): load the stage-1 model
# train.init_checkpoint, freeze all but `trainable` (fnmatch globs on parameter names), keep every
# BatchNorm in eval mode; classifier_init "auto" / "reinit" / "keep" (cRT re-initialises);
# lws: learnable weight scaling (Kang et al. 2020) on the stage-1 classifier; disalign: DisAlign's
# calibration of it (Zhang et al. 2021; train "...cls_score.logit_*" and "...cls_score.confidence").
decoupled = dict(
    trainable=["roi_heads.box_predictor.cls_score"],
    classifier_init="reinit",
    lws=dict(enabled=False, scale_bias=False),
    disalign=dict(enabled=False),
)
train.init_checkpoint = "output/lazy/demo/model_final.pth"  # stage 1
model.roi_heads.box_predictor.cls_loss.name = "softmax_ce"
dataloader.train.sampler = "ClassAwareSampler"

train.max_iter = 196
lr_multiplier.scheduler.milestones = [98, 160]
lr_multiplier.warmup_length = 10 / 196
train.output_dir = "output/lazy/demo_cRT"
