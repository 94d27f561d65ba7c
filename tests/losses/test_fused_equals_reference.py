"""The fused path of every loss equals its reference (the formula in plain PyTorch, autograd), value
and gradient, with the compiled kernels; and no compiled graph serves another parameter value,
in one process or across processes sharing inductor's on-disk cache."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from detectron2.structures import Boxes, Instances

from lt_det.data.image_labels import IMAGE_LABELS_FIELD
from lt_det.losses import build_loss, list_losses
from lt_det.losses import fused

from loss_stats_dataset import NUM_CLASSES as K
from loss_stats_dataset import loss_cfg

# Every configuration the formula tests cover, as (loss, config overrides).
VARIANTS = [
    ("sigmoid_ce", []),
    ("sigmoid_ce", ["MODEL.LT_LOSS.SIGMOID.BACKGROUND_LOGIT", False]),
    ("focal", []),
    ("focal", ["MODEL.LT_LOSS.FOCAL.ALPHA", -1.0, "MODEL.LT_LOSS.FOCAL.GAMMA", 0.5]),
    ("class_balanced_focal", []),
    ("inverse_frequency", []),
    ("class_balanced", []),
    ("class_balanced", ["MODEL.LT_LOSS.CLASS_BALANCED.CLIP", (0.01, 5.0)]),
    ("balanced_softmax", []),
    ("balanced_softmax", ["MODEL.LT_LOSS.BALANCED_SOFTMAX.BACKGROUND", "none"]),
    ("balanced_softmax", ["MODEL.LT_LOSS.BALANCED_SOFTMAX.EXPONENT", 0.25]),
    ("balanced_sigmoid", []),
    ("balanced_sigmoid", ["MODEL.LT_LOSS.BALANCED_SIGMOID.FORM", "paper"]),
    ("eql", []),
    ("eql", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("eql", ["MODEL.LT_LOSS.EQL.USE_IMAGE_LABELS", True]),
    ("eql", ["MODEL.LT_LOSS.EQL.EXCLUDE_BACKGROUND", False]),
    ("softmax_eql", []),
    ("softmax_eql", ["MODEL.LT_LOSS.SOFTMAX_EQL.GAMMA", 0.3]),
    ("droploss", []),
    ("droploss", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("gumbel_ce", []),
    ("gumbel_ce", ["MODEL.LT_LOSS.GUMBEL_CE.CLAMP_LOSS", False]),
    ("federated", []),
    ("federated", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("bags", []),
    ("seesaw", []),
    ("seesaw", ["MODEL.LT_LOSS.SEESAW.P", 0.0, "MODEL.LT_LOSS.SEESAW.Q", 0.5]),
    ("eqlv2", []),
    ("eqlv2", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("acsl", []),
    ("acsl", ["MODEL.LT_LOSS.ACTIVATION", "gumbel"]),
    ("acsl", ["MODEL.LT_LOSS.ACSL.SCORE_THRESHOLD", 0.2, "MODEL.LT_LOSS.ACSL.BACKGROUND_KEEP", [0.5, 0.25, 1.0]]),
    ("ecm", []),
    ("ecm", ["MODEL.LT_LOSS.ECM.FG_BG_RATIO", 0.0]),
    ("loce", []),
    ("loce", ["MODEL.LT_LOSS.LOCE.MOMENTUM", 0.5]),
    ("grw", []),
    ("grw", ["MODEL.LT_LOSS.GRW.RHO", 0.0]),
]
DRAWS_UNIFORM = {"droploss", "softmax_eql"}  # the reference takes the fused path's U as ``u``
R = 96


def build(name, opts):
    cfg = loss_cfg(name)
    cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 3  # so the federated loss samples
    cfg.merge_from_list(opts)
    return build_loss(cfg)


def inputs(num_logits, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(R, num_logits, generator=gen) * 4  # reaches the Gumbel clamp and saturation
    gt = torch.randint(0, K + 1, (R,), generator=gen)
    labels = torch.rand(R, K, generator=gen) < 0.5  # one image's verified classes, per RoI
    boxes = torch.rand(R, 2, 2, generator=gen).sort(dim=1).values.flatten(1) * 8  # (x0, y0, x1, y1), LOCE's objects
    proposals = Instances((8, 8), gt_classes=gt, gt_boxes=Boxes(boxes))
    proposals.set(IMAGE_LABELS_FIELD, labels[:1].expand(R, -1))
    return logits, gt, [proposals]


def value_and_grad(fn, logits):
    z = logits.clone().requires_grad_()
    value = fn(z)
    value.backward()
    return value.detach(), z.grad


def assert_fused_equals_reference(name, loss, logits, gt, proposals):
    """One step of each path from the same state: equal value, gradient and state after the step."""
    # A step on other RoIs first, so that state-keeping losses (Seesaw's counts, EQLv2's gradient
    # statistics, ECM's RoI counts) start from a state that changes their weights.
    loss.loss(*inputs(logits.shape[1], seed=1)[:2], proposals=proposals)
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    torch.manual_seed(0)
    fast = value_and_grad(lambda z: loss.fused_loss(z, gt, proposals=proposals), logits)
    fast_state = {k: v.clone() for k, v in loss.state_dict().items()}
    loss.load_state_dict(state)
    torch.manual_seed(0)  # the same multinomial / randperm draws, and the same hash keys
    extras = {"proposals": proposals}
    if name in DRAWS_UNIFORM:
        extras["u"] = fused.uniform(fused.draw_keys(logits.device), torch.arange(R), logits.shape[1])
    slow = value_and_grad(lambda z: loss.loss(z, gt, **extras), logits)
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-6, atol=1e-6)
    for key, value in loss.state_dict().items():
        torch.testing.assert_close(fast_state[key], value, rtol=1e-6, atol=1e-6, msg=f"state '{key}'")


def test_every_loss_with_a_fused_path_is_covered():
    with_fused = {n for n in list_losses() if build(n, []).has_fused_path()}
    assert with_fused <= {name for name, _ in VARIANTS}
    assert not build("softmax_ce", []).has_fused_path()  # detectron2's own loss, reference only


@pytest.mark.parametrize("name, opts", VARIANTS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)))
def test_fused_equals_reference(name, opts):
    loss = build(name, opts)
    logits, gt, proposals = inputs(loss.num_logits(K))
    before = fused.compiled_calls()
    assert_fused_equals_reference(name, loss, logits, gt, proposals)
    assert fused.compiled_calls() > before and not fused.compile_failures(), "the fused kernels did not run compiled"


# Every float that reaches a compiled kernel, with two values each: (loss, key, first, second).
FLOAT_PARAMETERS = [
    ("focal", "MODEL.LT_LOSS.FOCAL.GAMMA", 2.0, 0.5),
    ("focal", "MODEL.LT_LOSS.FOCAL.ALPHA", 0.25, 0.6),
    ("class_balanced_focal", "MODEL.LT_LOSS.FOCAL.GAMMA", 2.0, 1.0),
    ("softmax_eql", "MODEL.LT_LOSS.SOFTMAX_EQL.GAMMA", 0.9, 0.2),
    ("seesaw", "MODEL.LT_LOSS.SEESAW.P", 0.8, 0.3),
    ("seesaw", "MODEL.LT_LOSS.SEESAW.Q", 2.0, 0.7),
    ("droploss", "MODEL.LT_LOSS.TAIL_THRESHOLD", 0.01, 0.1),  # moves the tail ratio (a kernel input)
]


@pytest.mark.parametrize("name, key, first, second", FLOAT_PARAMETERS)
def test_a_parameter_change_between_compiled_calls_is_seen(name, key, first, second):
    for value in (first, second):
        loss = build(name, [key, value])
        logits, gt, proposals = inputs(loss.num_logits(K))
        assert_fused_equals_reference(name, loss, logits, gt, proposals)


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = {paths!r}
    import torch
    import test_fused_equals_reference as t
    from lt_det.losses import fused
    failures = []
    for name, key, first, second in t.FLOAT_PARAMETERS:
        loss = t.build(name, [key, {{"first": first, "second": second}}[sys.argv[1]]])
        logits, gt, proposals = t.inputs(loss.num_logits(t.K))
        try:
            t.assert_fused_equals_reference(name, loss, logits, gt, proposals)
        except AssertionError as e:
            failures.append(f"{{name}} {{key}}: {{e}}")
    print(json.dumps({{"failures": failures, "fallbacks": sorted(fused.compile_failures())}}))
    """
)


def test_processes_sharing_one_inductor_cache_see_their_own_parameters(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(paths=[here, os.path.dirname(here)]))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), TORCHINDUCTOR_FX_GRAPH_CACHE="1")
    for which in ("first", "second"):  # the second process compiles against the first one's cache
        proc = subprocess.run([sys.executable, str(script), which], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report == {"failures": [], "fallbacks": []}, report
    assert any((tmp_path / "inductor").rglob("*")), "the processes wrote no inductor cache"
