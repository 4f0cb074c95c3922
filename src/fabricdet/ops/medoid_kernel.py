"""Cluster medoids (:mod:`fabricdet.ops.medoid`) as one compiled CPU loop (numba).

The tensor version gathers each kept detection's cluster into a row padded to the largest
cluster and takes the overlaps of every padded pair: on a trained model's candidates, whose
clusters range from one box to dozens, that is about ten times the pairs the clusters hold,
plus a sort and a dozen small ops. Here each cluster's members are listed and only their pairs
computed. The arithmetic is the tensor version's, in float32 and in the same order per
overlap (so memberships agree exactly); only the agreement sums may round differently, which
can swap two members whose agreements tie to within float32 rounding.

Compiled on first use (cached on disk by numba); the tensor version serves other devices and
traced or exported graphs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ZERO = np.float32(0.0)
_EPS = np.float32(1e-9)  # as fabricdet.ops.boxes


@njit(cache=True, inline="always")
def _iou(boxes: np.ndarray, area: np.ndarray, p: int, q: int) -> np.float32:
    """``fabricdet.ops.boxes.pairwise_iou`` of boxes ``p`` and ``q``, the same float32 ops."""
    iw = max(min(boxes[p, 2], boxes[q, 2]) - max(boxes[p, 0], boxes[q, 0]), _ZERO)
    ih = max(min(boxes[p, 3], boxes[q, 3]) - max(boxes[p, 1], boxes[q, 1]), _ZERO)
    inter = iw * ih
    return inter / max(area[p] + area[q] - inter, _EPS)


@njit(cache=True)
def medoid_picks(
    boxes: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    keep: np.ndarray,
    iou_threshold: np.float32,
) -> np.ndarray:
    """Index of each kept detection's cluster medoid among the candidates.

    Args:
        boxes (float32[N, 4]), weights (float32[N]): candidates and their weights ``s^p``;
        labels (int64[N]); keep (int64[K]): the kept candidates.
        iou_threshold: cluster membership, IoU with the kept box at or above it.

    Returns:
        int64[K]: the member with the largest weighted IoU with the others, the lowest index
        among equals (the kept box itself when it is alone).
    """
    w = np.maximum(boxes[:, 2] - boxes[:, 0], _ZERO)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], _ZERO)
    area = w * h
    # Candidates grouped by class, ascending index within each (a stable sort): a cluster is
    # looked for among its class only, and its members come in the tensor version's order.
    by_class = np.argsort(labels, kind="mergesort")
    sorted_labels = labels[by_class]
    picks = np.empty(len(keep), np.int64)
    members = np.empty(len(boxes), np.int64)
    for r in range(len(keep)):
        c = keep[r]
        lo = np.searchsorted(sorted_labels, labels[c], side="left")
        hi = np.searchsorted(sorted_labels, labels[c], side="right")
        size = 0
        for i in by_class[lo:hi]:
            if _iou(boxes, area, c, i) >= iou_threshold:
                members[size] = i
                size += 1
        best, pick = np.float32(-1.0), c
        for a in range(size):
            k = members[a]
            agreement = _ZERO
            for b in range(size):
                i = members[b]
                agreement += weights[i] * _iou(boxes, area, i, k)
            if agreement > best:
                best, pick = agreement, k
        picks[r] = pick
    return picks
