"""Fixed AP (Dave et al., "Evaluating Large-Vocabulary Object Detectors: The Devil is in the
Details", 2021): no per-image cap; each category's top K = 10,000 detections over the whole split.

The evaluation half, as in the authors' code (achalddave/large-vocab-devil):
:func:`top_k_per_class` keeps each category's top K detections over all images (ties in results
order, as their ``sorted(..., reverse=True)`` keeps them), then lvis-api runs with
``max_dets=-1``. :mod:`lt_det.evaluation.results_io` applies it while merging results. The
inference half, the box head's per-class top-k without a per-image cap, is a modeling concern:
:mod:`lt_det.modeling.fixed_ap_inference`.

Shorthand: D detections over the whole split.
"""
import numpy as np

__all__ = ["top_k_per_class"]


def top_k_per_class(category_ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean keep-mask (D,) of each category's ``k`` highest-scoring of D detections, given
    their (D,) category ids and (D,) scores.

    Ties are broken by position (earlier first), so the result is deterministic and matches
    a stable descending sort per category.
    """
    category_ids = np.asarray(category_ids)
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.zeros(len(scores), dtype=bool)
    if len(scores) == 0:
        return keep
    order = np.lexsort((np.arange(len(scores)), -scores, category_ids))
    sorted_cats = category_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_cats[1:] != sorted_cats[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep[order[rank < k]] = True
    return keep
