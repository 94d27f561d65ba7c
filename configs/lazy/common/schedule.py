"""Training options, optimizer and LR schedule in LazyConfig form: detectron2's 1x LVIS schedule
(90k iterations at 16 images, SGD lr 0.02 momentum 0.9 weight decay 1e-4, x0.1 at 60k and 80k,
1000 linear warm-up iterations from 0.001), as the YACS configs/Base-LVIS-MaskRCNN-FPN.yaml."""
import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params

# detectron2's configs/common/train.py keys, read by lt_det.engine.lazy_train
train = dict(
    output_dir="./output",
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",  # stage 2: the stage-1 model
    max_iter=90000,
    amp=dict(enabled=False),  # automatic mixed precision (AMPTrainer)
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),  # PeriodicCheckpointer
    eval_period=0,  # 0: evaluate once, after training
    log_period=20,
    device="cuda",  # falls back to "cpu" where CUDA is unavailable
    seed=-1,  # < 0: a random seed (detectron2's default_setup); also the sampler's seed
)

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),  # params.model: set by the trainer
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[60000, 80000], num_updates="${train.max_iter}",
    ),
    warmup_length=1000 / 90000,  # as a fraction of max_iter
    warmup_method="linear",
    warmup_factor=0.001,
)
