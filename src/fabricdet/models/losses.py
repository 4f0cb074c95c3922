"""Dense one-to-many losses: focal loss, IoU-quality BCE, GIoU plus L1 on the box encoding, and
an embedding pull-push."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss


def focal_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Sigmoid focal loss (RetinaNet, alpha 0.25, gamma 2), summed; divide by the positives.

    ``logits, targets (Tensor[..., C])``, targets in {0, 1}.
    """
    return sigmoid_focal_loss(logits, targets, reduction="sum")


def quality_loss(logits: Tensor, iou: Tensor) -> Tensor:
    """BCE of the quality branch towards the (detached) IoU of the predicted box, summed.

    ``logits, iou (Tensor[P])`` over the positive locations.
    """
    return F.binary_cross_entropy_with_logits(logits, iou, reduction="sum")


def box_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted GIoU loss, summed. ``pred, target (Tensor[P, 4])`` xyxy; ``weight (Tensor[P])``."""
    if pred.numel() == 0:
        return pred.sum() * 0
    return (generalized_box_iou_loss(pred, target, reduction="none") * weight).sum()


def encode_boxes(boxes: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """Boxes in the head's own units: centre offset from the location and log size, in strides.

    Args:
        boxes (Tensor[P, 4]) xyxy; points (Tensor[P, 2]); strides (Tensor[P]).

    Returns:
        Tensor[P, 4]: ``(dx, dy, log w, log h)``, sizes floored at 1 px.
    """
    s = strides.unsqueeze(-1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
    return torch.cat([(centre - points) / s, torch.log(size / s)], -1)


def box_l1_loss(pred: Tensor, target: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """L1 between encoded predicted and target boxes (:func:`encode_boxes`), summed.

    IoU losses alone have a trap: the gradient of ``1 - IoU`` with respect to the log size of
    a box much larger than its target is about the IoU, so a box that overshoots gets no pull
    back and, from scratch, sizes drift to whole-image boxes. L1 in log-size units pulls with
    the same strength at any scale (YOLOX and DETR pair an L1 term with the IoU loss too).

    ``pred, target (Tensor[P, 4])`` xyxy; ``points (Tensor[P, 2])``; ``strides (Tensor[P])``.
    """
    if pred.numel() == 0:
        return pred.sum() * 0
    diff = encode_boxes(pred, points, strides) - encode_boxes(target, points, strides)
    return diff.abs().sum()


def embedding_loss(embeddings: Tensor, gt_index: Tensor, margin: float = 0.3) -> Tensor:
    """Pull the embeddings of one object together, push different objects' means apart.

    Gives SinkhornNMS' appearance term a direct signal (the set loss trains it end to end too):
    duplicates of one defect should look alike, two adjacent defects should not.

    Args:
        embeddings (Tensor[P, D]): embeddings of one image's positive locations.
        gt_index (Tensor[P] int64): the object each belongs to.
        margin: cosine similarity above which two objects' means are pushed apart.

    Returns:
        loss (Tensor[]) averaged over objects.
    """
    if embeddings.numel() == 0:
        return embeddings.sum() * 0
    emb = F.normalize(embeddings, dim=-1)
    ids, inverse = torch.unique(gt_index, return_inverse=True)
    sums = torch.zeros(len(ids), emb.shape[1], dtype=emb.dtype, device=emb.device)
    sums.index_add_(0, inverse, emb)
    means = F.normalize(sums, dim=-1)
    pull = (1 - (emb * means[inverse]).sum(-1)).mean()
    if len(ids) < 2:
        return pull
    sim = means @ means.T
    off_diag = ~torch.eye(len(ids), dtype=torch.bool, device=emb.device)
    push = torch.relu(sim[off_diag] - margin).mean()
    return pull + push


def neighbour_embedding_loss(
    embeddings: Tensor, boxes: Tensor, owner: Tensor, labels: Tensor, iou_threshold: float
) -> Tensor:
    """Push apart the embeddings of overlapping same-class candidates on different objects.

    These pairs are the only ones SinkhornNMS' appearance term decides: their boxes overlap
    beyond the spatial term's threshold, so only the embeddings can say "two defects" (two
    adjacent parallel threads) rather than "one defect, twice". :func:`embedding_loss` pushes
    apart object means, which for two look-alike defects of one class stay close; this loss
    asks for orthogonal embeddings (``cos <= 0``, far beyond SinkhornNMS' default margin)
    exactly where the decision is made.

    Args:
        embeddings (Tensor[P, D]): candidates' embeddings (any scale).
        boxes (Tensor[P, 4]): their boxes, xyxy (detached).
        owner (Tensor[P] int64): the object each candidate lies on (its box overlaps that
            object, and no other, beyond the threshold).
        labels (Tensor[P] int64): their classes.
        iou_threshold: box IoU above which two candidates compete for one slot.

    Returns:
        loss (Tensor[]): mean of ``relu(cos)`` over the overlapping pairs on different objects;
        0 (in the graph) when there are none.
    """
    if len(embeddings) < 2:
        return embeddings.sum() * 0
    emb = F.normalize(embeddings, dim=-1)
    overlap = box_iou(boxes, boxes) >= iou_threshold
    neighbours = overlap & (owner[:, None] != owner[None, :]) & (labels[:, None] == labels[None, :])
    if not bool(neighbours.any()):
        return embeddings.sum() * 0
    cos = emb @ emb.T
    return torch.relu(cos[neighbours]).mean()
