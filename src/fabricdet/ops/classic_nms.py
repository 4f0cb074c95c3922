"""The classic NMS variants, for comparison with SinkhornNMS and as options.

Each function takes ``boxes (Tensor[N, 4])`` xyxy, ``scores (Tensor[N])`` and
``idxs (Tensor[N] int64)`` (boxes of different ``idxs`` never interact) and returns
``(keep, scores, boxes)``: kept indices sorted by decreasing output score, the output scores
(rescored for Soft-NMS and Matrix NMS, fused for WBF) and the output boxes (fused for WBF).

Classes are kept apart the way torchvision's ``batched_nms`` does: every box is shifted by
``idx * (max coordinate + 1)`` so boxes of different classes cannot overlap.

The sequential methods (Soft-NMS, DIoU-NMS, WBF) loop over boxes in NumPy on the host: they
are baselines, written for clarity and exactness rather than speed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fabricdet.ops.boxes import pairwise_diou, pairwise_iou

NMSOutput = tuple[Tensor, Tensor, Tensor]


def _offset_by_class(boxes: Tensor, idxs: Tensor) -> Tensor:
    """Shift boxes so that different ``idxs`` never overlap (torchvision's trick)."""
    if boxes.numel() == 0:
        return boxes
    shift = idxs.to(boxes.dtype) * (boxes.max() - boxes.min() + 1) * 4
    return boxes + shift[:, None]


def _empty(boxes: Tensor, scores: Tensor) -> NMSOutput:
    return torch.empty(0, dtype=torch.long, device=boxes.device), scores[:0], boxes[:0]


def _sorted_output(keep: Tensor, scores: Tensor, boxes: Tensor) -> NMSOutput:
    order = torch.sort(scores, descending=True, stable=True).indices
    return keep[order], scores[order], boxes[order]


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float = 0.3,
    *,
    kernel: Literal["linear", "gaussian"] = "gaussian",
    sigma: float = 0.5,
    score_threshold: float = 0.001,
) -> NMSOutput:
    """Soft-NMS (Bodla et al. 2017): decay the scores of overlapping boxes instead of removing.

    Linear: ``s_j *= 1 - IoU`` when ``IoU > iou_threshold``; Gaussian: ``s_j *= exp(-IoU^2 /
    sigma)``. Boxes whose score falls below ``score_threshold`` are dropped.
    """
    if boxes.numel() == 0:
        return _empty(boxes, scores)
    iou = pairwise_iou(*(2 * [_offset_by_class(boxes, idxs)])).cpu().double().numpy()
    current = scores.detach().cpu().double().numpy().copy()
    alive = np.ones(len(current), dtype=bool)
    keep, kept_scores = [], []
    while alive.any():
        i = int(np.argmax(np.where(alive, current, -np.inf)))
        keep.append(i)
        kept_scores.append(current[i])
        alive[i] = False
        ov = iou[i]
        if kernel == "linear":
            decay = np.where(ov > iou_threshold, 1.0 - ov, 1.0)
        else:
            decay = np.exp(-(ov**2) / sigma)
        current = np.where(alive, current * decay, current)
        alive &= current >= score_threshold
    keep_t = torch.as_tensor(keep, dtype=torch.long, device=boxes.device)
    new_scores = torch.as_tensor(kept_scores, dtype=scores.dtype, device=scores.device)
    return _sorted_output(keep_t, new_scores, boxes[keep_t])


def matrix_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    *,
    kernel: Literal["linear", "gaussian"] = "gaussian",
    sigma: float = 2.0,
    score_threshold: float = 0.05,
) -> NMSOutput:
    """Matrix NMS (SOLOv2): every box's score decays by its worst overlap with a better box,
    compensated by how suppressed that better box itself is; fully parallel.
    """
    if boxes.numel() == 0:
        return _empty(boxes, scores)
    order = torch.sort(scores, descending=True, stable=True).indices
    shifted = _offset_by_class(boxes, idxs)[order]
    iou = pairwise_iou(shifted, shifted).triu(diagonal=1)  # iou[i, j], i better than j
    compensate = iou.max(dim=0).values  # how much each box is itself overlapped
    if kernel == "linear":
        decay = (1 - iou) / (1 - compensate[:, None]).clamp_min(1e-6)
    else:
        decay = torch.exp(-sigma * (iou**2 - compensate[:, None] ** 2))
    new_scores = scores[order] * decay.min(dim=0).values.clamp(max=1.0)
    selected = new_scores >= score_threshold
    return _sorted_output(order[selected], new_scores[selected], boxes[order[selected]])


def _greedy_on_similarity(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression on a score-sorted similarity matrix; returns kept positions."""
    n = similarity.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= similarity[i] > threshold
    return np.asarray(keep, dtype=np.int64)


def diou_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> NMSOutput:
    """Greedy NMS with Distance-IoU as the overlap (Zheng et al. 2020): a box close in IoU but
    with a distant centre survives."""
    if boxes.numel() == 0:
        return _empty(boxes, scores)
    order = torch.sort(scores, descending=True, stable=True).indices
    shifted = _offset_by_class(boxes, idxs)[order]
    sim = pairwise_diou(shifted, shifted).cpu().numpy()
    kept = torch.as_tensor(_greedy_on_similarity(sim, iou_threshold), device=boxes.device)
    keep = order[kept]
    return keep, scores[keep], boxes[keep]


def weighted_box_fusion(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float = 0.55,
    *,
    score_mode: Literal["mean", "max"] = "mean",
) -> NMSOutput:
    """Weighted box fusion (Solovyev et al. 2021) for a single model's detections.

    Boxes in decreasing score order join the first cluster whose fused box they overlap by more
    than ``iou_threshold`` (same class), else start a cluster. A cluster's box is the
    score-weighted mean of its members; its score is their mean (or max). ``keep`` holds each
    cluster's best member.
    """
    if boxes.numel() == 0:
        return _empty(boxes, scores)
    order = torch.sort(scores, descending=True, stable=True).indices.cpu().numpy()
    b = _offset_by_class(boxes, idxs).detach().cpu().double().numpy()
    raw = boxes.detach().cpu().double().numpy()
    s = scores.detach().cpu().double().numpy()
    fused: list[np.ndarray] = []  # in shifted coordinates, for matching
    members: list[list[int]] = []
    for i in order:
        if fused:
            f = np.stack(fused)
            lt = np.maximum(f[:, :2], b[i, :2])
            rb = np.minimum(f[:, 2:], b[i, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            area_f = np.prod(np.clip(f[:, 2:] - f[:, :2], 0, None), axis=1)
            area_i = np.prod(np.clip(b[i, 2:] - b[i, :2], 0, None))
            iou = inter / np.maximum(area_f + area_i - inter, 1e-9)
            best = int(np.argmax(iou))
            if iou[best] > iou_threshold:
                members[best].append(int(i))
                w = s[members[best]]
                fused[best] = (w[:, None] * b[members[best]]).sum(0) / w.sum()
                continue
        fused.append(b[i].copy())
        members.append([int(i)])
    keep = torch.as_tensor([m[0] for m in members], dtype=torch.long, device=boxes.device)
    out_boxes = np.stack([(s[m, None] * raw[m]).sum(0) / s[m].sum() for m in members])
    agg = np.mean if score_mode == "mean" else np.max
    out_scores = np.asarray([agg(s[m]) for m in members])
    return _sorted_output(
        keep,
        torch.as_tensor(out_scores, dtype=scores.dtype, device=scores.device),
        torch.as_tensor(out_boxes, dtype=boxes.dtype, device=boxes.device),
    )
