"""τ-normalisation of a trained classifier, post hoc (Kang et al., "Decoupling Representation and
Classifier for Long-Tailed Recognition", ICLR 2020).

Shorthand: L logits, D features, C foreground classes; ``class_rows`` (C,) int64 gives the
classifier row of each class (``LTLoss.classifier_rows()``: the first C rows for most losses, not
for BAGS).

``w̃_c = w_c / ||w_c||₂^τ`` for the row of every foreground class c; the other rows (background,
objectness, BAGS's "others") and every bias are unchanged. τ = 0 is the identity; τ = 1 gives
unit-norm rows.
"""
from typing import Dict, Sequence, Union

import torch

__all__ = ["class_weight_norms", "tau_normalize", "tau_normalize_state_dict", "CLASSIFIER_WEIGHT"]

CLASSIFIER_WEIGHT = "roi_heads.box_predictor.cls_score.weight"  # detectron2's classifier


Rows = Union[torch.Tensor, Sequence[int]]


def check_class_rows(class_rows: Rows, num_rows: int) -> torch.Tensor:
    """``class_rows`` as a (C,) int64 tensor; raises ValueError unless they are distinct rows of an
    L = ``num_rows`` classifier."""
    rows = torch.as_tensor(class_rows, dtype=torch.long)
    if rows.dim() != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= num_rows or len(rows.unique()) != len(rows):
        raise ValueError(f"class rows must be distinct rows of a classifier with {num_rows} rows, got {rows.tolist()}")
    return rows


def class_weight_norms(
    state_dict: Dict[str, torch.Tensor], class_rows: Rows, key: str = CLASSIFIER_WEIGHT
) -> torch.Tensor:
    """(C,) the effective weight norm of each foreground class's classifier row: ``||w_c||₂``, times
    ``|s_c|`` when the checkpoint holds an LWS scale (the ``scale`` next to ``key``, one per class
    row, :class:`lt_det.modeling.lws.LWSLinear`).

    Raises:
        KeyError: ``key`` is not in the checkpoint (lists the classifier-like keys).
        ValueError: ``class_rows`` are not distinct rows of the classifier.
    """
    if key not in state_dict:
        near = [k for k in state_dict if "cls_score" in k]
        raise KeyError(f"classifier weight '{key}' not in the checkpoint; classifier-like keys: {near}")
    weight = state_dict[key]
    norms = weight[check_class_rows(class_rows, weight.shape[0])].float().norm(dim=1)
    scale = state_dict.get(key.rsplit(".", 1)[0] + ".scale")
    return norms if scale is None else norms * scale.float().abs()


def tau_normalize(weight: torch.Tensor, tau: float, class_rows: Rows) -> torch.Tensor:
    """(L, D) -> (L, D): the rows ``class_rows`` divided by their L2 norm to the power τ.

    An all-zero row stays zero.
    """
    if weight.dim() != 2:
        raise ValueError(f"tau_normalize: expected an (L, D) weight, got {tuple(weight.shape)}")
    rows = check_class_rows(class_rows, weight.shape[0])
    fg = weight[rows]
    norms = fg.norm(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny)
    out = weight.clone()
    out[rows] = fg / norms.pow(tau)
    return out


def tau_normalize_state_dict(
    state_dict: Dict[str, torch.Tensor], tau: float, class_rows: Rows, key: str = CLASSIFIER_WEIGHT
) -> Dict[str, torch.Tensor]:
    """A copy of a model ``state_dict`` whose classifier weight ``key`` is τ-normalised."""
    if key not in state_dict:
        near = [k for k in state_dict if k.endswith(".weight") and "cls_score" in k]
        raise KeyError(f"classifier weight '{key}' not in the checkpoint; classifier-like keys: {near}")
    out = dict(state_dict)
    out[key] = tau_normalize(torch.as_tensor(state_dict[key]), tau, class_rows)
    return out
