#!/usr/bin/env python
"""Train or evaluate an lt_det model.

    python train_net.py --config-file configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml
    python train_net.py --config-file configs/LVISv1/mask_rcnn_R_50_FPN_1x.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume          # continue from OUTPUT_DIR's last checkpoint
    python train_net.py --import my_project.losses --config-file ... MODEL.LT_LOSS.NAME my_loss

Without CUDA, ``--num-gpus N`` runs N CPU processes (gloo).
"""
import importlib
import logging

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import lt_det.modeling  # noqa: F401  (ROI heads registration)
from lt_det.builtin import setup_environment
from lt_det.config import add_lt_det_config
from lt_det.engine import Trainer, launch


def setup(args):
    setup_environment()
    for module in args.imports:  # downstream losses register themselves (and their keys) on import
        importlib.import_module(module)
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        # detectron2's default device is "cuda"; the same configs must run on a CPU-only machine.
        logging.getLogger("lt_det").warning("CUDA is not available: MODEL.DEVICE set to 'cpu'")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lt_det")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
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
