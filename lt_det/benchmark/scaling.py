"""Carrying LVIS's dataset-size-dependent thresholds to a smaller long-tailed set.

Thresholds such as RFS's t, the tail threshold λ of EQL / DropLoss / GOL and BAGS's group bins are
set for LVIS v1's size (99,388 annotated training images, 1,203 classes); used unchanged on a set
of 1,397 images and 40 classes they mark a different part of the distribution (t = 0.001 would
mark no class there: its rarest class is in 1 / 1,397 = 0.0007 of the images, only a handful below
0.001). The benchmark applies one rule to all of them, for every method alike:

    a threshold marks the same share of classes on the new set as it marks on LVIS v1 train.

With ``s`` that share and ``K`` classes, ``k = round(s K)`` classes are marked: a frequency
threshold becomes the geometric mean of the ``k``-th and ``k+1``-th smallest image frequencies
(strictly between them), a count bin edge becomes the ``k``-th smallest count plus one (bins are
``n < edge``; where counts tie so that an edge would not exceed the previous one, it is set to the
previous one plus one).

The shares, counted on LVIS v1 train (per-category ``image_count`` / ``instance_count``, image
frequency = image_count / 99,388):

=========================  ======================  ===========================
LVIS v1 value              classes marked          used by
=========================  ======================  ===========================
image frequency < 0.0005   666 / 1203 (0.554)      RFS t of the EQL / DropLoss resampling configs
image frequency < 0.001    796 / 1203 (0.662)      RFS t (LVIS, BALMS, GOL, Seesaw)
image frequency < 0.0011   815 / 1203 (0.677)      λ of EQL / DropLoss / GOL (v1)
instance count < 10        200 / 1203 (0.166)      BAGS bin edge 1
instance count < 100       612 / 1203 (0.509)      BAGS bin edge 2
instance count < 1000      946 / 1203 (0.786)      BAGS bin edge 3
=========================  ======================  ===========================
"""
import math
from typing import Dict, Sequence, Tuple

LVIS_V1_NUM_CLASSES = 1203
# LVIS v1 value -> number of LVIS v1 train classes it marks (see the module docstring)
LVIS_V1_FREQUENCY_MARKED = {0.0005: 666, 0.001: 796, 0.0011: 815}
LVIS_V1_INSTANCE_COUNT_MARKED = {10: 200, 100: 612, 1000: 946}


def _marked(share: float, num_classes: int) -> int:
    k = int(round(share * num_classes))
    if not 0 < k < num_classes:
        raise ValueError(f"a share of {share:.3f} of {num_classes} classes marks {k}: too few classes to scale")
    return k


def scaled_frequency_threshold(lvis_value: float, image_frequency: Sequence[float]) -> float:
    """The frequency threshold marking the classes LVIS's ``lvis_value`` would, in share.

    Args:
        lvis_value: a key of ``LVIS_V1_FREQUENCY_MARKED``.
        image_frequency: (K,) fraction of the set's training images containing each class.
    """
    if lvis_value not in LVIS_V1_FREQUENCY_MARKED:
        raise KeyError(f"no LVIS v1 share for frequency {lvis_value}; known: {sorted(LVIS_V1_FREQUENCY_MARKED)}")
    f = sorted(image_frequency)
    k = _marked(LVIS_V1_FREQUENCY_MARKED[lvis_value] / LVIS_V1_NUM_CLASSES, len(f))
    return math.sqrt(f[k - 1] * f[k])


def scaled_count_edges(lvis_edges: Sequence[int], instance_count: Sequence[int]) -> Tuple[int, ...]:
    """BAGS's instance-count bin edges carried over by share (each a key of
    ``LVIS_V1_INSTANCE_COUNT_MARKED``); (len(lvis_edges),) increasing integers."""
    n = sorted(instance_count)
    edges = []
    for edge in lvis_edges:
        if edge not in LVIS_V1_INSTANCE_COUNT_MARKED:
            raise KeyError(f"no LVIS v1 share for instance count {edge}; known: {sorted(LVIS_V1_INSTANCE_COUNT_MARKED)}")
        k = _marked(LVIS_V1_INSTANCE_COUNT_MARKED[edge] / LVIS_V1_NUM_CLASSES, len(n))
        # where counts tie, an edge may not exceed the previous one: move it up, no group is empty
        edges.append(max(n[k - 1] + 1, edges[-1] + 1 if edges else 0))
    return tuple(edges)


def scaled_thresholds(image_count: Sequence[int], instance_count: Sequence[int], num_images: int) -> Dict[str, object]:
    """The config values the benchmark sets for every cell, from the training set's statistics.

    Returns: {config key: value} for ``DATALOADER.REPEAT_THRESHOLD`` (t = 0.001),
    ``MODEL.LT_LOSS.TAIL_THRESHOLD`` (λ = 0.0011), ``MODEL.LT_LOSS.BAGS.BIN_EDGES`` ((10, 100, 1000))
    and ``RFS_T_EQL`` (t = 0.0005, the placeholder of methods.yaml).
    """
    freq = [c / num_images for c in image_count]
    return {
        "DATALOADER.REPEAT_THRESHOLD": scaled_frequency_threshold(0.001, freq),
        "MODEL.LT_LOSS.TAIL_THRESHOLD": scaled_frequency_threshold(0.0011, freq),
        "MODEL.LT_LOSS.BAGS.BIN_EDGES": scaled_count_edges((10, 100, 1000), instance_count),
        "RFS_T_EQL": scaled_frequency_threshold(0.0005, freq),
    }
