"""Cluster medoids: a better-placed box for each detection an NMS keeps.

Every NMS keeps one box per cluster of duplicates: the best-scored one (greedy, DIoU, Soft-NMS,
Matrix NMS) or SinkhornNMS' seed, which its quality prior also ranks by score. A detector whose
scores do not rank its duplicates by placement keeps a misplaced box while a better one sits in
the same cluster (on the demo's models the candidates hold a box at IoU 0.75 for 55-63% of the
objects, the kept boxes for 15-22%: docs/experiment-log.md, "Where any NMS could still gain").

The medoid replaces the kept box by the member of its cluster that agrees most with the others,
each weighted by its score to a power:

    medoid(r) = argmax_{k in C_r} sum_{i in C_r} s_i^p IoU(b_i, b_k)

with ``C_r`` the candidates of ``r``'s class overlapping its box by IoU >= the threshold (the
cluster greedy NMS suppresses around it). Duplicates scatter around the object, so the box they
agree on is nearer its centre than any one of them tends to be. ``p = 0`` counts every member
alike; larger ``p`` trusts the better-scored. The kept detection keeps its score (the ranking,
and so AP50, is the NMS method's); only its box moves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fabricdet.ops.boxes import pairwise_iou, tracing
from fabricdet.ops.medoid_kernel import medoid_picks


def cluster_members(
    centres: Tensor, centre_labels: Tensor, boxes: Tensor, labels: Tensor, iou_threshold: float
) -> Tensor:
    """Which candidates belong to each centre's cluster.

    Args:
        centres (Tensor[..., K, 4]), centre_labels (Tensor[..., K]): the kept boxes, classes.
        boxes (Tensor[..., N, 4]), labels (Tensor[..., N]): the candidates, classes.

    Returns:
        Tensor[..., K, N] bool: same class and IoU >= ``iou_threshold``.
    """
    same = centre_labels.unsqueeze(-1) == labels.unsqueeze(-2)
    return same & (pairwise_iou(centres, boxes) >= iou_threshold)


def medoid_index(member: Tensor, boxes: Tensor, weights: Tensor) -> Tensor:
    """Each cluster's medoid (module docstring).

    Args:
        member (Tensor[..., K, N] bool): cluster membership (:func:`cluster_members`).
        boxes (Tensor[..., N, 4]): the candidates.
        weights (Tensor[..., N]): each candidate's weight ``s^p`` (0: not a candidate).

    Returns:
        Tensor[..., K] int64: index of the medoid among the N candidates; for a cluster with no
        member (only padding), an arbitrary index.
    """
    weighted = member.to(boxes.dtype) * weights.unsqueeze(-2)
    agreement = weighted @ pairwise_iou(boxes, boxes)  # [..., K, N]
    return agreement.masked_fill(~member, -1.0).argmax(-1)


def medoid_boxes(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    keep: Tensor,
    iou_threshold: float,
    power: float = 1.0,
) -> Tensor:
    """The medoid box of each kept detection's cluster.

    Args:
        boxes (Tensor[N, 4]), scores (Tensor[N]), idxs (Tensor[N] int64): the candidates the
            NMS received, and their classes.
        keep (Tensor[K] int64): the kept candidates (an NMS' ``keep``).
        iou_threshold: cluster membership (the NMS threshold).
        power: ``p``, the score weighting.

    Returns:
        Tensor[K, 4]: each kept detection's box (its own when its cluster is itself alone, or
        empty: a zero-area box overlaps nothing).
    """
    if not power >= 0:
        raise ValueError(f"power must be >= 0, got {power}")
    if len(keep) == 0:
        return boxes[keep]
    weights = scores.to(boxes.dtype) ** power
    if boxes.device.type == "cpu" and boxes.dtype == torch.float32 and not tracing():
        # the compiled loop over each cluster's own pairs (medoid_kernel)
        picks = medoid_picks(
            boxes.detach().numpy(),
            weights.detach().numpy(),
            idxs.numpy(),
            keep.numpy(),
            np.float32(iou_threshold),
        )
        return boxes[torch.from_numpy(picks)]
    member = cluster_members(boxes[keep], idxs[keep], boxes, idxs, iou_threshold)
    # Each cluster's members gathered into a row of its own (padded to the largest cluster),
    # so the overlaps are computed within clusters only: sum of |C_r|^2, not K N^2.
    counts = member.sum(1)
    size = int(counts.max())  # host sync: fine for the eager decode's variable-size output
    if size == 0:  # every kept box zero-area
        return boxes[keep]
    index = torch.sort(member.to(torch.uint8), dim=1, descending=True, stable=True)[1][:, :size]
    real = torch.arange(size, device=boxes.device) < counts.unsqueeze(1)  # [K, size]
    pick = medoid_index(real.unsqueeze(1), boxes[index], torch.where(real, weights[index], 0.0))
    medoid = boxes[index.gather(1, pick)[:, 0]]  # one cluster per row
    return torch.where((counts > 0).unsqueeze(1), medoid, boxes[keep])
