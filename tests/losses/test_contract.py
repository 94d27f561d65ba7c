"""One contract over every registered loss, including one a downstream project registers here.

Shapes, empty batch, extreme logits, fp16 / bf16 autocast, score range, device independence.
"""
import pathlib

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from lt_det.losses import LTLoss, build_loss, list_losses, register_loss

from loss_stats_dataset import NUM_CLASSES as K
from loss_stats_dataset import loss_cfg

# Every test here runs on the fused path and on the reference.
pytestmark = pytest.mark.usefixtures("both_implementations")


@register_loss("test_downstream_label_smoothing")
class DownstreamLabelSmoothing(LTLoss):
    """What a downstream project writes: a loss registered from its own module."""

    @configurable
    def __init__(self, *, num_classes: int, smoothing: float = 0.1):
        super().__init__(num_classes)
        self.smoothing = smoothing

    @classmethod
    def from_config(cls, cfg):
        return {"num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES}

    def loss(self, logits, gt_classes, **extras):
        return F.cross_entropy(logits, gt_classes, label_smoothing=self.smoothing)

    def scores(self, logits):
        return F.softmax(logits, dim=-1)


ALL = list_losses()  # every registered loss, the downstream one above included
LOSSES_DIR = pathlib.Path(__file__).resolve().parents[2] / "lt_det" / "losses"


def test_registry_lists_every_loss():
    import re

    modules = [p for p in LOSSES_DIR.glob("*.py") if p.name != "registry.py"]  # registry.py: a docstring example
    in_tree = {m for path in modules for m in re.findall(r'@register_loss\("(\w+)"\)', path.read_text())}
    assert len(in_tree) >= 15 and in_tree | {"test_downstream_label_smoothing"} <= set(ALL)


# Non-default forms of a loss, also run through the finite-value and autocast tests: (loss, config opts).
VARIANTS = [
    ("eqlv2", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("acsl", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
]


def build(name, opts=()):
    torch.manual_seed(0)
    cfg = loss_cfg(name)
    cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 3  # so the federated loss samples
    cfg.merge_from_list(list(opts))
    return build_loss(cfg)


@pytest.fixture(params=ALL)
def loss(request):
    return build(request.param)


@pytest.fixture(params=[(name, []) for name in ALL] + VARIANTS,
                ids=lambda variant: "-".join([variant[0], *map(str, variant[1][1::2])]))
def loss_or_variant(request):
    """Every registered loss with its defaults, then each of VARIANTS."""
    return build(*request.param)


def batch(num_logits, num_rois=16, scale=3.0, device="cpu"):
    gt = torch.arange(num_rois, device=device) % (K + 1)  # every class and background
    return torch.randn(num_rois, num_logits, device=device) * scale, gt


def test_shapes_and_scores(loss):
    num_logits = loss.num_logits(K)
    logits, gt = batch(num_logits)
    logits.requires_grad_()
    value = loss(logits, gt)
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value) and logits.grad.shape == logits.shape
    scores = loss.scores(logits.detach())
    assert scores.shape == (16, K + 1)
    assert ((scores >= 0) & (scores <= 1)).all()
    predicted = loss.predict_classes(logits.detach())
    assert predicted.shape == (16,) and ((predicted >= 0) & (predicted <= K)).all()
    linear = nn.Linear(8, num_logits)
    loss.init_classifier(linear)


def test_empty_batch_is_a_connected_zero(loss):
    logits = torch.zeros(0, loss.num_logits(K), requires_grad=True)
    value = loss(logits, torch.zeros(0, dtype=torch.long))
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


def test_extreme_logits_stay_finite(loss_or_variant):
    loss = loss_or_variant
    logits, gt = batch(loss.num_logits(K), scale=1.0)
    logits = (torch.sign(logits) * 1e4).requires_grad_()
    value = loss(logits, gt)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    scores = loss.scores(logits.detach())
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast(loss_or_variant, dtype):
    loss = loss_or_variant
    linear = nn.Linear(8, loss.num_logits(K))
    loss.init_classifier(linear)
    x = torch.randn(16, 8) * 50
    gt = torch.arange(16) % (K + 1)
    with torch.autocast("cpu", dtype=dtype):
        logits = linear(x)
        assert logits.dtype == dtype
        value = loss(logits, gt)
        scores = loss.scores(logits)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(linear.weight.grad).all()
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(loss):
    loss = loss.cuda()
    logits, gt = batch(loss.num_logits(K), device="cuda")
    logits.requires_grad_()
    loss(logits, gt).backward()
    assert logits.grad.device.type == "cuda" and loss.scores(logits).device.type == "cuda"


def test_no_loss_hard_codes_a_device():
    for path in LOSSES_DIR.rglob("*.py"):
        text = path.read_text()
        assert ".cuda(" not in text and '"cuda' not in text and "'cuda" not in text, path.name
