"""Training a torchvision detector through SinkhornNMS: differentiable candidates and the set
loss on SinkhornNMS' slots.

The host's heads give per-anchor (or per-proposal) class probabilities and decoded boxes; the
best ``k`` (anchor, class) pairs of each image become SinkhornNMS' candidates with their
gradients intact (only the *choice* of the top ``k`` is made on detached scores), the batched
dense solver matches them to slots, and :class:`fabricdet.models.set_loss.SetCriterion` scores
the slots against the ground truth. Its gradients reach the classification logits through the
slots' scores (and through the plan, with ``set_plan_grad``), and the box regression through
the plan-fused boxes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from fabricdet.models.adapters.options import AdapterOptions
from fabricdet.models.set_loss import SetCriterion, plan_grad_scale
from fabricdet.ops import SinkhornNMS


class CandidateSet(NamedTuple):
    """``M`` candidates per image, padded (``mask`` marks the real ones).

    Attributes:
        boxes (Tensor[B, M, 4]): xyxy, clipped to the image.
        scores (Tensor[B, M]): probabilities (differentiable).
        labels (Tensor[B, M] int64): class index into the scores' last dimension.
        mask (Tensor[B, M] bool).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    mask: Tensor


def top_candidates(
    scores: Tensor,
    boxes: Tensor,
    image_sizes: list[tuple[int, int]],
    k: int,
    valid: Tensor | None = None,
) -> CandidateSet:
    """The ``k`` best (anchor, class) pairs of each image, with a static count.

    Args:
        scores (Tensor[B, A, C]): class probabilities in [0, 1].
        boxes (Tensor[B, A, 4] shared by the classes, or Tensor[B, A, C, 4] per class): xyxy.
        image_sizes: ``(H, W)`` of each image (boxes are clipped to it).
        k: candidates per image (fewer when ``A * C < k``).
        valid (Tensor[B, A] bool, optional): ``False`` marks padding anchors.

    Returns:
        :class:`CandidateSet` with ``M = min(k, A * C)``.
    """
    _, a, c = scores.shape
    ranked = scores.detach()
    if valid is not None:
        ranked = ranked.masked_fill(~valid.unsqueeze(-1), -1.0)
    m = min(k, a * c)
    top, index = ranked.flatten(1).topk(m, dim=1)
    anchor, labels = index // c, index % c
    cand_scores = torch.gather(scores.flatten(1), 1, index)  # keeps the gradient
    if boxes.dim() == 3:
        cand_boxes = torch.gather(boxes, 1, anchor.unsqueeze(-1).expand(-1, -1, 4))
    else:
        cand_boxes = torch.gather(boxes.flatten(1, 2), 1, index.unsqueeze(-1).expand(-1, -1, 4))
    hw = torch.tensor(image_sizes, dtype=cand_boxes.dtype, device=cand_boxes.device)
    upper = hw.flip(1).repeat(1, 2).unsqueeze(1)  # [B, 1, 4]: W, H, W, H
    # clamp, not clip_boxes_to_image: the same values, but the gradient of a box edge inside
    # the image is untouched
    cand_boxes = torch.minimum(cand_boxes.clamp_min(0), upper)
    return CandidateSet(cand_boxes, cand_scores, labels, top >= 0)


def pad_stack(rows: list[Tensor], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack per-image tensors of different lengths.

    Args:
        rows: ``Tensor[A_b, ...]`` per image, equal trailing shapes.

    Returns:
        ``Tensor[B, max A_b, ...]`` padded with ``fill`` and its ``Tensor[B, max A_b]`` bool
        mask of real rows.
    """
    longest = max((len(r) for r in rows), default=0)
    padded, valid = [], []
    for r in rows:
        pad = r.new_full((longest - len(r), *r.shape[1:]), fill)
        padded.append(torch.cat([r, pad]))
        mask = torch.zeros(longest, dtype=torch.bool, device=r.device)
        mask[: len(r)] = True
        valid.append(mask)
    return torch.stack(padded), torch.stack(valid)


class SetTerms(nn.Module):
    """SinkhornNMS (batched, solved on its edge list) on candidates, then the set loss against
    the targets.

    Args:
        options: solver and loss options.
        iou_threshold: ``theta`` at this place of the host.
        prefix: put before the loss names (``"rpn_"`` for the proposal stage).
    """

    def __init__(self, options: AdapterOptions, iou_threshold: float, prefix: str = "") -> None:
        super().__init__()
        self.options = options
        self.prefix = prefix
        self.nms = SinkhornNMS(
            iou_threshold=iou_threshold, eps=options.eps_start, num_iters=options.num_iters,
            spatial_weight=options.spatial_weight, quality_weight=options.quality_weight,
            dustbin_cost=options.dustbin_cost, overlap=options.overlap,  # type: ignore[arg-type]
            nwd_scale=options.nwd_scale, fuse_power=options.fuse_power,
            max_slots=options.set_slots, spatial_grad=options.set_spatial_grad,
            fuse_boxes=options.set_fused_boxes,
            edges=True, decode_iters=0,  # the set loss needs neither the dense plan nor `keep`
        )  # fmt: skip
        start = options.eps_start
        self.nms.plan_grad_scale = plan_grad_scale(options.set_plan_grad, start, start)
        self.criterion = SetCriterion(options.keep_weight, options.box_weight, options.set_min_iou)
        self.weight = options.set_weight

    def set_progress(self, progress: float) -> None:
        """Anneal eps geometrically from ``eps_start`` to ``eps``; ramp the weight in."""
        o = self.options
        p = min(max(progress, 0.0), 1.0)
        self.nms.eps = o.eps_start * (o.eps / o.eps_start) ** p
        self.nms.plan_grad_scale = plan_grad_scale(o.set_plan_grad, self.nms.eps, o.eps_start)
        ramp = 1.0 if o.set_warmup <= 0 else min(1.0, p / o.set_warmup)
        self.weight = o.set_weight * ramp

    def forward(self, cand: CandidateSet, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """``{prefix + "set_keep": Tensor[], prefix + "set_box": Tensor[]}``, weighted.

        Args:
            targets: per image ``boxes`` (Tensor[G, 4], the candidates' pixels) and ``labels``
                (Tensor[G] int64, the candidates' label space).
        """
        names = (self.prefix + "set_keep", self.prefix + "set_box")
        if cand.scores.shape[1] == 0:  # no anchors at all: zero terms, still in the graph
            zero = cand.scores.sum() * 0
            return dict.fromkeys(names, zero)
        # the solver runs in float32 even under autocast (DESIGN 3: stable in fp32)
        out = self.nms(cand.boxes.float(), cand.scores.float(), cand.labels, mask=cand.mask)
        terms = self.criterion(out, targets)
        return {names[0]: self.weight * terms["set_keep"], names[1]: self.weight * terms["set_box"]}
