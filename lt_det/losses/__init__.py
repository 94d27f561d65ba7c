"""Box-classification losses for long-tailed detection; importing this package registers them.

``build_loss(cfg)`` builds the loss named by MODEL.LT_LOSS.NAME (or by detectron2 main's
MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS keys); ``register_loss`` adds one from anywhere.
Each loss is one module: its formula in plain PyTorch (``loss``), its config keys
(``add_config``) and, where it has one, its fast path on :mod:`lt_det.losses.fused`.
"""
from .base import BinaryLoss, LTLoss, append_background
from .config import add_loss_config, build_loss, resolve_loss_name
from .registry import get_loss_class, list_losses, register_loss

# Built-in losses: importing a module registers its losses.
from . import (  # noqa: F401  isort:skip
    softmax_ce,
    sigmoid_ce,
    focal,
    inverse_frequency,
    class_balanced,
    class_balanced_focal,
    balanced_softmax,
    balanced_sigmoid,
    eql,
    softmax_eql,
    droploss,
    gumbel_ce,
    federated,
    bags,
    seesaw,
    eqlv2,
    acsl,
    ecm,
    loce,
    grw,
)

__all__ = [
    "LTLoss",
    "BinaryLoss",
    "append_background",
    "add_loss_config",
    "build_loss",
    "resolve_loss_name",
    "get_loss_class",
    "list_losses",
    "register_loss",
]
