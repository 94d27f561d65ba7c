"""τ-normalisation of a trained classifier, post hoc (Kang et al. 2020; SPEC §8).

Shorthand: L logits, D features, C foreground classes whose logits are the first C rows.

``w̃_c = w_c / ||w_c||₂^τ`` for every foreground row c < C; the other rows (background,
objectness) and every bias are unchanged. τ = 0 is the identity; τ = 1 gives unit-norm rows.
"""
from typing import Dict

import torch

__all__ = ["tau_normalize", "tau_normalize_state_dict", "CLASSIFIER_WEIGHT"]

CLASSIFIER_WEIGHT = "roi_heads.box_predictor.cls_score.weight"  # detectron2's classifier


def tau_normalize(weight: torch.Tensor, tau: float, num_classes: int) -> torch.Tensor:
    """(L, D) -> (L, D): the first ``num_classes`` rows divided by their L2 norm to the power τ.

    An all-zero row stays zero.
    """
    if weight.dim() != 2 or not 0 < num_classes <= weight.shape[0]:
        raise ValueError(f"tau_normalize: expected an (L, D) weight with L >= {num_classes}, got {tuple(weight.shape)}")
    fg = weight[:num_classes]
    norms = fg.norm(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny)
    return torch.cat([fg / norms.pow(tau), weight[num_classes:]])


def tau_normalize_state_dict(
    state_dict: Dict[str, torch.Tensor], tau: float, num_classes: int, key: str = CLASSIFIER_WEIGHT
) -> Dict[str, torch.Tensor]:
    """A copy of a model ``state_dict`` whose classifier weight ``key`` is τ-normalised."""
    if key not in state_dict:
        near = [k for k in state_dict if k.endswith(".weight") and "cls_score" in k]
        raise KeyError(f"classifier weight '{key}' not in the checkpoint; classifier-like keys: {near}")
    out = dict(state_dict)
    out[key] = tau_normalize(torch.as_tensor(state_dict[key]), tau, num_classes)
    return out
