"""Set loss on SinkhornNMS' slots: what trains the detector *through* its duplicate removal.

Slots are matched one-to-one to ground-truth objects (Hungarian matching, as in DETR). A slot's
confidence is its seed's score times its keep probability; a matched slot's confidence goes to
1 and its plan-fused box must fit the object (GIoU); every other slot's confidence goes to 0,
by suppression when it duplicates a better slot, by a lower score when it is a lone false
positive (no NMS can remove those). The gradients flow through the slots' scores into their
seeds' scores, and through the fused boxes into the boxes they average; with a gradient through
the plan (:data:`PLAN_GRAD`) also into every candidate's score and embedding (and box, where
the plan's spatial term passes gradients: :class:`fabricdet.ops.SinkhornNMS`' ``spatial_grad``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou, generalized_box_iou_loss

from fabricdet.ops import SinkhornNMSOutput

#: How the set loss' gradient passes SinkhornNMS' plan: ``raw`` as it is, ``eps`` scaled by
#: ``eps / eps_start`` (its starting size as eps anneals), ``none`` not at all.
PLAN_GRAD: tuple[str, ...] = ("raw", "eps", "none")


def plan_grad_scale(mode: str, eps: float, eps_start: float) -> float:
    """SinkhornNMS' ``plan_grad_scale`` for the :data:`PLAN_GRAD` ``mode`` at the current
    ``eps`` of an anneal that started at ``eps_start``."""
    if mode == "none":
        return 0.0
    return eps / eps_start if mode == "eps" else 1.0


SetLossScores = Literal["all", "matched", "none"]


class SetCriterion:
    """Hungarian-matched keep and box losses on SinkhornNMS outputs.

    Args:
        keep_weight, box_weight: loss weights.
        min_iou: a match counts only if the slot's fused box overlaps its object this much
            (early in training the matching would otherwise force random slots to survive).
        scores: which slots' seed scores the keep loss trains directly (it always trains
            their keep probabilities, and through the plan everything the plan depends on).
            ``"all"``: a slot's confidence is its score times its keep probability. That
            fights the dense one-to-many loss twice: it pushes an unsuppressed duplicate's
            score down, which the dense loss raises as a positive, and a matched slot's score
            up to 1, where the dense loss wants ``sqrt(IoU)`` (its quality target).
            ``"matched"``: unmatched slots are pushed down through their keep probability
            only. ``"none"``: the scores are constants here, so the keep loss trains the NMS
            decision alone and leaves the scores to the dense loss.
    """

    def __init__(
        self,
        keep_weight: float = 1.0,
        box_weight: float = 2.0,
        min_iou: float = 0.3,
        scores: SetLossScores = "all",
    ) -> None:
        self.keep_weight = keep_weight
        self.box_weight = box_weight
        self.min_iou = min_iou
        self.scores = scores

    @torch.no_grad()
    def match(self, out: SinkhornNMSOutput, b: int, gt_boxes: Tensor, gt_labels: Tensor) -> Tensor:
        """Slot index matched to each GT of image ``b`` (-1 when unmatched). ``Tensor[G]``."""
        matched = torch.full((len(gt_labels),), -1, dtype=torch.long, device=gt_labels.device)
        valid = out.slot_mask[b].nonzero().squeeze(1)
        if len(valid) == 0 or len(gt_labels) == 0:
            return matched
        boxes = out.boxes[b, valid].float()
        confidence = (out.scores[b, valid] * out.keep_prob[b, valid]).unsqueeze(1)
        cost = 2 * (1 - generalized_box_iou(boxes, gt_boxes)) - confidence
        cost = cost + 1e3 * (out.labels[b, valid, None] != gt_labels[None, :])
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        rows_t = torch.as_tensor(rows, device=valid.device)
        cols_t = torch.as_tensor(cols, device=valid.device)
        iou = box_iou(boxes[rows_t], gt_boxes[cols_t]).diagonal()
        same = out.labels[b, valid[rows_t]] == gt_labels[cols_t]
        ok = same & (iou >= self.min_iou)
        matched[cols_t[ok]] = valid[rows_t[ok]]
        return matched

    def __call__(
        self, out: SinkhornNMSOutput, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Losses summed over images and divided by the number of objects.

        Returns:
            ``{"set_keep": Tensor[], "set_box": Tensor[]}``.
        """
        keep_target = torch.zeros_like(out.keep_prob)
        pred_boxes, gt_boxes = [], []
        num_gt = 0
        for b, target in enumerate(targets):
            matched = self.match(out, b, target["boxes"], target["labels"])
            hit = matched >= 0
            keep_target[b, matched[hit]] = 1.0
            pred_boxes.append(out.boxes[b, matched[hit]])
            gt_boxes.append(target["boxes"][hit])
            num_gt += len(target["labels"])
        norm = max(num_gt, 1)
        positive = keep_target > 0
        scores = out.scores
        if self.scores == "none":
            scores = scores.detach()
        elif self.scores == "matched":
            scores = torch.where(positive, scores, scores.detach())
        prob = (scores * out.keep_prob).clamp(1e-6, 1 - 1e-6).float()
        bce = F.binary_cross_entropy(prob, keep_target, reduction="none") * out.slot_mask
        # positives per object, negatives per slot: hundreds of empty slots must not drown the
        # few matched ones, nor dominate the dense losses' gradients
        keep = bce[positive].sum() / norm + bce[~positive].sum() / max(int(out.slot_mask.sum()), 1)
        pb, gb = torch.cat(pred_boxes), torch.cat(gt_boxes)
        box = (
            generalized_box_iou_loss(pb.float(), gb, reduction="sum") / norm
            if len(pb)
            else prob.sum() * 0
        )
        return {"set_keep": self.keep_weight * keep, "set_box": self.box_weight * box}
