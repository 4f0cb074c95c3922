"""Dynamic label assignment (SimOTA-style) that suits knots of a few pixels and long threads.

For each ground-truth box, candidate locations are those whose centre lies inside the box
widened to at least one stride in each direction (so a 2 px thread still has locations on
every level, all along its length) or within ``radius`` strides of its centre (so a 3 px knot
has some). Among the candidates a GT takes its ``k`` cheapest locations, ``k`` being the
rounded sum of its 10 best IoUs (dynamic k: well-predicted objects get more positives) but at
least ``min_k`` (from scratch, IoUs start near 0 and one positive per object learns slowly); a
location claimed by several GTs goes to the cheapest one. Cost = -log p(class) + 3 * (-log IoU).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_iou


class Assignment(NamedTuple):
    """Per-location assignment for one image.

    Attributes:
        gt_index (Tensor[A] int64): index of the assigned GT, -1 for background.
        iou (Tensor[A]): IoU of the predicted box with its GT (0 for background).
    """

    gt_index: Tensor
    iou: Tensor


@torch.no_grad()
def assign(
    points: Tensor,
    strides: Tensor,
    pred_boxes: Tensor,
    pred_scores: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    radius: float = 2.5,
    topk: int = 10,
    min_k: int = 4,
) -> Assignment:
    """Assign locations to GT boxes.

    Args:
        points (Tensor[A, 2]): location centres; strides (Tensor[A]).
        pred_boxes (Tensor[A, 4]): decoded predicted boxes, xyxy.
        pred_scores (Tensor[A, C]): predicted class probabilities.
        gt_boxes (Tensor[G, 4]) xyxy; gt_labels (Tensor[G] int64).

    Returns:
        :class:`Assignment`.
    """
    num_loc = points.shape[0]
    if gt_boxes.numel() == 0:
        return Assignment(
            torch.full((num_loc,), -1, dtype=torch.long, device=points.device),
            points.new_zeros(num_loc),
        )
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # [G, 2]
    half = (gt_boxes[:, 2:] - gt_boxes[:, :2]) / 2
    offset = (points.unsqueeze(0) - centre.unsqueeze(1)).abs()  # [G, A, 2]
    stride = strides.view(1, -1, 1)
    inside = (offset <= torch.maximum(half.unsqueeze(1), stride / 2)).all(-1)
    near_centre = (offset < radius * stride).all(-1)
    candidate = inside | near_centre  # [G, A]

    iou = box_iou(gt_boxes, pred_boxes)  # [G, A]
    cls_prob = pred_scores[:, gt_labels].T.clamp_min(1e-8)  # [G, A]
    cost = -torch.log(cls_prob) - 3.0 * torch.log(iou + 1e-8) + 1e5 * (~candidate)

    cand_iou = iou * candidate
    k_dyn = cand_iou.topk(min(topk, num_loc), dim=1).values.sum(1).int().clamp(min=min_k)  # [G]
    k_max = int(min(max(topk, min_k), num_loc))
    cheapest = cost.topk(k_max, dim=1, largest=False).indices  # [G, k_max], ascending cost
    take = torch.arange(k_max, device=points.device).unsqueeze(0) < k_dyn.unsqueeze(1)
    chosen = torch.zeros_like(candidate).scatter_(1, cheapest, take) & candidate  # [G, A]
    # a location wanted by several GTs goes to the cheapest
    cost_chosen = torch.where(chosen, cost, torch.full_like(cost, float("inf")))
    best_cost, best_gt = cost_chosen.min(0)
    gt_index = torch.where(torch.isfinite(best_cost), best_gt, torch.full_like(best_gt, -1))
    positive = gt_index >= 0
    loc_iou = torch.zeros(num_loc, dtype=pred_boxes.dtype, device=points.device)
    loc_iou[positive] = iou[gt_index[positive], positive.nonzero().squeeze(1)]
    return Assignment(gt_index, loc_iou)
