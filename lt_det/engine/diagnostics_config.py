"""Config keys of training diagnostics, read by :class:`lt_det.engine.Trainer`'s hooks."""
from detectron2.config import CfgNode as CN

__all__ = ["add_diagnostics_config"]


def add_diagnostics_config(cfg) -> None:
    """Adds ``cfg.DIAGNOSTICS`` (in place)."""
    cfg.DIAGNOSTICS = CN()
    # Equalization Loss's Figure 1 (Tan et al., CVPR 2020): per foreground class j, the |gradient|
    # of the classification loss w.r.t. logit z_j summed over all iterations, split into positive
    # (RoIs labelled j) and negative (every other RoI, background included); their ratio shows how
    # much more rare classes are pushed down than up. Written after training to
    # OUTPUT_DIR/logit_grad_stats.json (rank 0's RoIs in multi-process runs); see
    # lt_det.engine.logit_grad_stats. Cost per iteration: a few passes over the (R, K) logit
    # gradient and a (K,) copy to the CPU, about 0.8x one softmax CE forward + backward on the same
    # logits (CPU, R = 512, K = 40); nothing when off.
    cfg.DIAGNOSTICS.LOGIT_GRAD_STATS = False
