#!/usr/bin/env python
"""Train or evaluate an lt_det model.

    python train_net.py --config-file configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml
    python train_net.py --config-file configs/LVISv1/mask_rcnn_R_50_FPN_1x.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume          # continue from OUTPUT_DIR's last checkpoint
    python train_net.py --import my_project.losses --config-file ... MODEL.LT_LOSS.NAME my_loss
    python train_net.py --config-file configs/lazy/demo_synthetic_lt.py \
        model.roi_heads.box_predictor.cls_loss.name=eqlv2      # a LazyConfig (.py), key=value overrides

Without CUDA, ``--num-gpus N`` runs N CPU processes (gloo).
"""
import importlib
import logging

import torch

from detectron2.config import LazyConfig, get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import lt_det.modeling  # noqa: F401  (ROI heads registration)
from lt_det.builtin import setup_environment
from lt_det.config import add_lt_det_config, merge_config
from lt_det.engine import Trainer, launch
from lt_det.engine.checkpoint import SafeCheckpointer
from lt_det.engine.lazy_train import build_lazy_model, check_lazy_config, do_test, do_train


def _cuda_or_cpu(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        # detectron2's default device is "cuda"; the same configs must run on a CPU-only machine.
        logging.getLogger("lt_det").warning("CUDA is not available: the model runs on 'cpu'")
        return "cpu"
    return device


def setup(args):
    setup_environment()
    for module in args.imports:  # downstream losses register themselves (and their keys) on import
        importlib.import_module(module)
    if args.config_file.endswith(".py"):
        return setup_lazy(args)
    cfg = get_cfg()
    add_lt_det_config(cfg)
    merge_config(cfg, args.config_file, args.opts)
    cfg.MODEL.DEVICE = _cuda_or_cpu(cfg.MODEL.DEVICE)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lt_det")
    return cfg


def setup_lazy(args):
    """A LazyConfig (.py) with ``key=value`` overrides (detectron2's lazy syntax)."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    check_lazy_config(cfg, args.config_file)
    cfg.train.device = _cuda_or_cpu(cfg.train.device)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="lt_det")
    return cfg


def main(args):
    cfg = setup(args)
    if args.config_file.endswith(".py"):
        if args.eval_only:
            model = build_lazy_model(cfg)
            SafeCheckpointer(model).load(cfg.train.init_checkpoint)
            return do_test(cfg, model)
        return do_train(cfg, resume=args.resume)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable): a downstream project's losses, ROI heads, ...")
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
