"""The fast path of the loss zoo: fused loss kernels compiled with ``torch.compile``.

Each kernel computes a family of losses' value and hand-derived gradient in one pass. The formulas
themselves live in plain PyTorch in each loss module (its ``loss``, the reference); a loss's
``fused_loss`` maps that formula onto one of these functions, and the tests check the two agree,
gradients included. Random draws differ: the references call ``torch.rand`` as the released code
does; the kernels draw the same distribution from a counter-based hash (:mod:`.counter_rng`).
"""
from .binary import Focal, RandomDrop, ScoreThreshold, weighted_binary_loss
from .counter_rng import draw_keys, uniform
from .kernel import compile_failures, compiled_calls
from .seesaw import seesaw_class_ce
from .softmax import RandomRemoval, SoftmaxGroup, grouped_softmax_ce, removal_mask, softmax_ce

__all__ = [
    "Focal",
    "RandomDrop",
    "ScoreThreshold",
    "RandomRemoval",
    "SoftmaxGroup",
    "compile_failures",
    "compiled_calls",
    "draw_keys",
    "grouped_softmax_ce",
    "removal_mask",
    "seesaw_class_ce",
    "softmax_ce",
    "uniform",
    "weighted_binary_loss",
]
