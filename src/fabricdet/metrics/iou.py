"""Pairwise box IoU in numpy (the metrics run without torch).

Continuous, pixel-edge convention: a box ``(x1, y1, x2, y2)`` covers ``x2 - x1`` by ``y2 - y1``
pixels (no VOC ``+1``), the convention of pycocotools and of fabricdet's boxes.
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of xyxy boxes.

    Args:
        boxes (ndarray[N, 4]): xyxy.

    Returns:
        ndarray[N] (float64); zero for degenerate boxes.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b``.

    Args:
        a (ndarray[N, 4]), b (ndarray[M, 4]): xyxy boxes.

    Returns:
        ndarray[N, M] (float64) in [0, 1]; 0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
