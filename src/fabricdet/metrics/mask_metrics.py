"""Mask quality for thin defects: per-instance IoU and boundary IoU.

Mask AP (pycocotools ``segm``) is in :mod:`.coco_eval`. AP hides how well a hair-thin mask
follows its thread, so two direct measures are added:

- instance IoU: each ground-truth mask is matched to its best prediction of the same class
  and image (highest mask IoU, among predictions scoring at least ``score_threshold``); the
  mean over ground-truth masks, unmatched ones counting 0;
- boundary IoU (Cheng et al., CVPR 2021): for the same pairs, IoU of the pixels of each mask
  within ``d`` pixels of its contour (the mask minus its erosion by ``d`` 3x3 steps, image
  borders counting as contour, as in the authors' code). For masks thinner than ``2 d`` it
  equals the mask IoU, as it should: the whole mask is boundary.

Full-image masks are 2446x1000; each pair is cropped to the union of the two masks' boxes plus
a ``d + 1`` margin before erosion (the result is the same: no pixel near the crop edge is set).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.rle import Rle, decode_mask, rle_bbox, to_pycoco
from fabricdet.metrics.predictions import Predictions

_KERNEL = np.ones((3, 3), dtype=np.uint8)


def mask_to_boundary(mask: np.ndarray, d: int = 2) -> np.ndarray:
    """Pixels of a mask within ``d`` pixels of its contour.

    Args:
        mask (ndarray[H, W]): nonzero = inside.
        d: band width in pixels (>= 1).

    Returns:
        ndarray[H, W] of bool.
    """
    m = (np.asarray(mask) != 0).astype(np.uint8)
    h, w = m.shape
    # A zero border makes the image edge count as contour (the reference implementation's rule).
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, _KERNEL, iterations=int(d))[1 : h + 1, 1 : w + 1]
    return (m - eroded).astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary masks (ndarray[H, W]); 1.0 when both are empty."""
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def boundary_iou(gt: np.ndarray, pred: np.ndarray, d: int = 2) -> float:
    """Boundary IoU of two binary masks (ndarray[H, W]); 1.0 when both are empty."""
    return mask_iou(mask_to_boundary(gt, d), mask_to_boundary(pred, d))


def rle_boundary_iou(gt: Rle, pred: Rle, d: int = 2) -> float:
    """Boundary IoU of two RLE masks of one image, computed on a crop around both."""
    h, w = (int(v) for v in gt["size"])
    boxes = np.array([rle_bbox(gt), rle_bbox(pred)])
    nonempty = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    if len(nonempty) == 0:
        return 1.0
    x1 = max(int(np.floor(nonempty[:, 0].min())) - d - 1, 0)
    y1 = max(int(np.floor(nonempty[:, 1].min())) - d - 1, 0)
    x2 = min(int(np.ceil(nonempty[:, 2].max())) + d + 1, w)
    y2 = min(int(np.ceil(nonempty[:, 3].max())) + d + 1, h)
    crop = (slice(y1, y2), slice(x1, x2))
    return boundary_iou(decode_mask(gt)[crop], decode_mask(pred)[crop], d)


@dataclass(frozen=True)
class MaskInstanceMetrics:
    """Attributes:
    miou: mean instance IoU over ground-truth masks.
    boundary_iou: mean boundary IoU over the same pairs.
    num_instances: ground-truth masks counted.
    """

    miou: float
    boundary_iou: float
    num_instances: int


def instance_mask_metrics(
    dataset: DetectionDataset,
    predictions: Predictions,
    *,
    d: int = 2,
    score_threshold: float = 0.0,
) -> MaskInstanceMetrics:
    """Mean instance IoU and boundary IoU (see the module docstring).

    Ground-truth instances without a mask are not counted; crowd regions are not counted.

    Raises:
        ValueError: the predictions carry no masks.
    """
    if predictions.masks is None:
        raise ValueError("instance mask metrics need predicted masks")
    predictions.check_against(dataset)
    keep = np.flatnonzero(predictions.scores >= score_threshold)
    by_image: dict[int, list[int]] = {}
    for k in keep:
        by_image.setdefault(int(predictions.image_ids[k]), []).append(int(k))
    ious: list[float] = []
    bious: list[float] = []
    for rec in dataset.images:
        gts = [inst for inst in rec.instances if inst.mask is not None]
        if not gts:
            continue
        cand = by_image.get(rec.image_id, [])
        for inst in gts:
            same = [k for k in cand if predictions.category_ids[k] == inst.category_id]
            if not same:
                ious.append(0.0)
                bious.append(0.0)
                continue
            pred_rles = [to_pycoco(predictions.masks[k]) for k in same]
            # RLE-domain IoU: no decoding of full-size masks to find the best match.
            row = mask_utils.iou(pred_rles, [to_pycoco(inst.mask)], [0])[:, 0]
            j = int(np.argmax(row))
            ious.append(float(row[j]))
            bious.append(rle_boundary_iou(inst.mask, predictions.masks[same[j]], d))
    n = len(ious)
    return MaskInstanceMetrics(
        miou=float(np.mean(ious)) if n else 0.0,
        boundary_iou=float(np.mean(bious)) if n else 0.0,
        num_instances=n,
    )
