"""Set loss on SinkhornNMS' slots: what trains the detector *through* its duplicate removal.

Slots are matched one-to-one to ground-truth objects (Hungarian matching, as in DETR). A slot's
confidence is its seed's score times its keep probability; a matched slot's confidence goes to
1 and its plan-fused box must fit the object (GIoU); every other slot's confidence goes to 0,
by suppression when it duplicates a better slot, by a lower score when it is a lone false
positive (no NMS can remove those). The gradients flow through the slots' scores into their
seeds' scores, and through the fused boxes into the boxes they average; with a gradient through
the plan (:data:`PLAN_GRAD`) also into every candidate's score and embedding (and box, where
the plan's spatial term passes gradients: :class:`fabricdet.ops.SinkhornNMS`' ``spatial_grad``).
Optionally a ranking term (:func:`slot_rank_loss`) trains the scores so that each matched slot's
members are ordered by how well they fit its object.
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

#: Temperature, in IoU, of the placement distribution :func:`slot_rank_loss` trains towards.
RANK_TEMPERATURE = 0.1


def slot_rank_loss(
    plan: Tensor,
    boxes: Tensor,
    scores: Tensor,
    mask: Tensor,
    slots: Tensor,
    gt_boxes: Tensor,
    power: float,
) -> Tensor:
    """Listwise ranking of each matched slot's members by placement, summed over the slots.

    A slot's fused box weights its members ``i`` by ``m_i * s_i ** power`` (``m``: plan mass,
    ``s``: score; :func:`fabricdet.ops.sinkhorn_nms_terms.fusion_factor`), and its seed is the
    best-scored member: both choose well only if the scores rank the members by how well they
    are placed, which the dense losses ask for only loosely (the classification target is 1 on
    every positive; the quality target, the IoU, covers the assigned positives alone and is
    learnt across all objects, not among one object's duplicates). Here the members' weight
    distribution ``p_i ~ m_i s_i ** power`` is pulled towards the placement distribution
    ``t_i ~ m_i exp(IoU_i / T)`` (``T``: :data:`RANK_TEMPERATURE`, ``IoU_i`` with the slot's
    object) by ``KL(t || p)``, whose optimum is ``log s_i = IoU_i / (power T) + const``: a
    better-placed duplicate scores higher, by a bounded ratio. Members are the candidates the
    plan sends mass to the slot and whose best-overlapping object is the slot's: a neighbour's
    box merged into the slot is not one of its duplicates to rank. The plan is a constant here.

    On the fabric detector the term did not fit even its training images and cost AP75
    (docs/experiment-log.md, "Teaching the scores to rank an object's duplicates"), so it is
    off by default.

    Args:
        plan (Tensor[N, K]): candidate -> slot mass of one image.
        boxes (Tensor[N, 4]), scores (Tensor[N]), mask (Tensor[N] bool): its candidates.
        slots (Tensor[G] int64): slot matched to each object, -1 for none.
        gt_boxes (Tensor[G, 4]): the objects.
        power: the scores' exponent in the members' weights (> 0).

    Returns:
        Tensor[] (0 without a matched slot of two or more members).
    """
    hit = (slots >= 0).nonzero().squeeze(1)
    if len(hit) == 0 or len(gt_boxes) == 0:
        return scores.sum() * 0
    iou = box_iou(boxes.detach().float(), gt_boxes.float())  # [N, G]
    owner = iou.argmax(1)
    mass = plan.detach().float()[:, slots[hit]]  # [N, H]
    member = (mass > 0) & mask.unsqueeze(1) & (owner.unsqueeze(1) == hit.unsqueeze(0))
    # One member has nothing to rank; none (the slot's boxes all lie closer to another
    # object) would make a softmax over nothing, whose gradient is NaN.
    ranked = member.sum(0) >= 2
    hit, mass, member = hit[ranked], mass[:, ranked], member[:, ranked]
    log_mass = mass.clamp_min(1e-30).log().masked_fill(~member, -torch.inf)
    target = torch.softmax(log_mass + iou[:, hit] / RANK_TEMPERATURE, 0)
    log_scores = scores.float().clamp_min(1e-6).log().unsqueeze(1)
    log_p = torch.log_softmax(log_mass + power * log_scores, 0)
    kl = torch.where(member, target * (target.clamp_min(1e-30).log() - log_p), 0.0)
    return kl.sum()


class SetCriterion:
    """Hungarian-matched keep and box losses on SinkhornNMS outputs.

    Args:
        keep_weight, box_weight: loss weights.
        min_iou: a match counts only if the slot's fused box overlaps its object this much
            (early in training the matching would otherwise force random slots to survive).
        rank_weight: weight of :func:`slot_rank_loss` (0: off; it needs the candidates).
        rank_power: its exponent on the scores (as ``fuse_power`` in the fused boxes).
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
        rank_weight: float = 0.0,
        rank_power: float = 4.0,
    ) -> None:
        if rank_weight and not rank_power > 0:
            raise ValueError(f"rank_power must be > 0, got {rank_power}")
        self.rank_weight = rank_weight
        self.rank_power = rank_power
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
        self,
        out: SinkhornNMSOutput,
        targets: list[dict[str, Tensor]],
        candidates: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Losses summed over images and divided by the number of objects.

        Args:
            candidates: the boxes (Tensor[B, N, 4]), scores (Tensor[B, N]) and mask
                (Tensor[B, N] bool) ``out`` was computed from; the ranking term needs them.

        Returns:
            ``{"set_keep": Tensor[], "set_box": Tensor[]}``, plus ``"set_rank"`` with
            ``rank_weight``.
        """
        ranking = self.rank_weight > 0
        if ranking and candidates is None:
            raise ValueError("the set loss' ranking term needs the candidates")
        keep_target = torch.zeros_like(out.keep_prob)
        pred_boxes, gt_boxes = [], []
        num_gt = 0
        rank = out.keep_prob.sum() * 0
        for b, target in enumerate(targets):
            matched = self.match(out, b, target["boxes"], target["labels"])
            if ranking:
                boxes, scores, mask = (c[b] for c in candidates)  # type: ignore[union-attr]
                plan = out.plan[b, : len(boxes), : out.keep_prob.shape[1]]
                rank = rank + slot_rank_loss(
                    plan, boxes, scores, mask, matched, target["boxes"],
                    self.rank_power,
                )  # fmt: skip
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
        # The keep probability is a product, not one logit's sigmoid, so the logits form does
        # not apply; CUDA autocast refuses the probability form, which float32 makes safe.
        with torch.autocast(prob.device.type, enabled=False):
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
        losses = {"set_keep": self.keep_weight * keep, "set_box": self.box_weight * box}
        if ranking:
            losses["set_rank"] = self.rank_weight * rank / norm
        return losses
