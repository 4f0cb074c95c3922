"""PASCAL-VOC average precision, as the Tianchi fabric competition scores it.

Per class present in the ground truth: detections sorted by descending score (ties keep file
order); each detection is compared with the ground-truth boxes of its image and class and
takes the one of highest IoU; it is a true positive when that IoU exceeds the threshold
(strictly, as in the VOC devkit's ``voc_eval``) and that box is not already taken, else a
false positive (VOC semantics: a detection whose best box is taken does not fall back to its
second best). AP is the area under the monotone precision envelope at every recall point
(VOC2010+). Crowd regions play VOC's "difficult" role: a detection whose best box is one is
ignored, and they do not count as positives.

IoU is continuous with pixel-edge xyxy boxes (no VOC ``+1``), see :mod:`.iou`.

Because the best box of a detection does not depend on which boxes are taken, the matching is
vectorised: one IoU matrix per image, then "first detection to claim a box wins" is a
``np.unique(..., return_index=True)`` over the score order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.crowd import crowd_of
from fabricdet.metrics.iou import box_iou
from fabricdet.metrics.predictions import Predictions


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Every-point interpolated AP (VOC2010+): area under the monotone precision envelope.

    Args:
        recall (ndarray[K]): non-decreasing recall after each detection.
        precision (ndarray[K]): precision after each detection.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, right to left
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass(frozen=True)
class GroundTruth:
    """All ground-truth boxes of a dataset, flattened.

    Attributes:
        image_ids (ndarray[G], int64), category_ids (ndarray[G], int64),
        boxes (ndarray[G, 4], float64), crowd (ndarray[G], bool): crowd/"difficult" regions.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray

    @classmethod
    def of(cls, dataset: DetectionDataset) -> GroundTruth:
        rows = [
            (r.image_id, inst.category_id, inst.box, is_crowd)
            for r in dataset.images
            for is_crowd, group in ((False, r.instances), (True, crowd_of(r)))
            for inst in group
        ]
        return cls(
            np.array([x[0] for x in rows], dtype=np.int64),
            np.array([x[1] for x in rows], dtype=np.int64),
            np.array([x[2] for x in rows], dtype=np.float64).reshape(-1, 4),
            np.array([x[3] for x in rows], dtype=bool),
        )


def best_matches(gt: GroundTruth, preds: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, its best same-class ground-truth box in its image.

    Returns:
        best (ndarray[N], int64): index into ``gt`` (-1 when the image has no box of that
        class); iou (ndarray[N], float64): the IoU with it (0 when none).
    """
    n = len(preds)
    best = np.full(n, -1, dtype=np.int64)
    best_iou = np.zeros(n, dtype=np.float64)
    if n == 0 or len(gt.image_ids) == 0:
        return best, best_iou
    p_order = np.argsort(preds.image_ids, kind="stable")
    g_order = np.argsort(gt.image_ids, kind="stable")
    p_ids, g_ids = preds.image_ids[p_order], gt.image_ids[g_order]
    images = np.unique(p_ids)
    p_lo, p_hi = np.searchsorted(p_ids, images, "left"), np.searchsorted(p_ids, images, "right")
    g_lo, g_hi = np.searchsorted(g_ids, images, "left"), np.searchsorted(g_ids, images, "right")
    for a, b, c, d in zip(p_lo, p_hi, g_lo, g_hi, strict=True):
        if c == d:
            continue
        pi, gi = p_order[a:b], g_order[c:d]
        iou = box_iou(preds.boxes[pi], gt.boxes[gi])  # [n_img_preds, n_img_gt]
        same = preds.category_ids[pi][:, None] == gt.category_ids[gi][None, :]
        iou = np.where(same, iou, -1.0)
        k = np.argmax(iou, axis=1)
        top = iou[np.arange(len(pi)), k]
        has = top >= 0
        best[pi[has]] = gi[k[has]]
        best_iou[pi[has]] = top[has]
    return best, best_iou


@dataclass(frozen=True)
class VocResult:
    """VOC AP at one IoU threshold.

    Attributes:
        map: mean AP over the classes present in the ground truth (0.0 when there are none).
        per_class: category id -> AP, for those classes.
    """

    map: float
    per_class: dict[int, float]


def voc_map(
    gt: GroundTruth,
    preds: Predictions,
    iou_threshold: float,
    matches: tuple[np.ndarray, np.ndarray] | None = None,
) -> VocResult:
    """VOC mAP at one IoU threshold (see the module docstring).

    Args:
        matches: :func:`best_matches` output, to share it between thresholds.
    """
    best, best_iou = matches if matches is not None else best_matches(gt, preds)
    order = np.argsort(-preds.scores.astype(np.float64), kind="stable")
    best, best_iou, cats = best[order], best_iou[order], preds.category_ids[order]
    hit = (best >= 0) & (best_iou > iou_threshold)
    ignored = hit & gt.crowd[np.maximum(best, 0)] if len(gt.crowd) else np.zeros_like(hit)
    claims = hit & ~ignored
    tp = np.zeros(len(order), dtype=bool)
    claim_idx = np.flatnonzero(claims)
    _, first = np.unique(best[claim_idx], return_index=True)
    tp[claim_idx[first]] = True  # the highest-scored claim of each box wins
    keep = ~ignored
    tp, cats = tp[keep], cats[keep]

    per_class: dict[int, float] = {}
    positives = gt.category_ids[~gt.crowd]
    for cid in np.unique(positives):
        npos = int(np.sum(positives == cid))
        sel = cats == cid
        ctp = np.cumsum(tp[sel])
        cfp = np.cumsum(~tp[sel])
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        per_class[int(cid)] = voc_ap(recall, precision) if sel.any() else 0.0
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return VocResult(mean, per_class)
