"""The terms of SinkhornNMS' cost, shared by its dense module, its sparse eval path and its
edge-list training solve (the formulation is in :mod:`fabricdet.ops.sinkhorn_nms`).

- :func:`similarity_floor`: the similarity ``m`` below which a pair provably carries no mass;
- :func:`neighbourhood_reach`: how far apart (in box sizes) two boxes with ``sigma >= m`` can be;
- :func:`appearance_cost`, :func:`quality_prior`: two of the cost's terms;
- :data:`SEED_FUSE_WEIGHT`, :func:`fusion_factor`: the seed's weight in its fused box, and the
  score factor on every candidate's;
- :func:`scale_grad`: the plan's gradient scaling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fabricdet.ops.boxes import OverlapKind

# Margin, in units of eps, by which a pair below the similarity floor costs more than the dustbin.
_MARGIN = 20.0
#: Weight of a slot's seed box in its plan-weighted fused box: keeps an empty slot at its seed.
SEED_FUSE_WEIGHT = 1e-6


def fusion_factor(scores: Tensor, power: float) -> Tensor:
    """Factor on each candidate's plan mass in its slot's fused box: ``s ** power``.

    The plan already carries mass up to each candidate's score, so ``power = 0`` weights the
    duplicates linearly by score; a larger power lets the best-scored (with a quality-aware
    score, the best-placed) ones dominate, towards the seed's own box as ``power`` grows.

    Args:
        scores (Tensor[...]): confidences in [0, 1].

    Returns:
        Tensor[...], the shape of ``scores``.
    """
    if power == 0.0:
        return torch.ones_like(scores)
    # Clamped: the gradient of s ** power is finite at s = 0 for powers below 1 too.
    return scores.clamp_min(1e-6) ** power


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x`` unchanged, its gradient multiplied by ``factor`` (traceable: plain tensor ops)."""
    if factor == 1.0:
        return x
    frozen = x.detach()
    if factor == 0.0:
        return frozen  # nothing to differentiate behind it
    return frozen + factor * (x - frozen)


def similarity_floor(
    iou_threshold: float,
    eps: float,
    spatial_weight: float,
    dustbin_cost: float,
    quality_bound: float,
) -> float | None:
    """``m``: a pair with ``sigma < m`` costs at least ``dustbin_cost + 20 eps`` whatever the
    scores and looks (``quality_bound = w_q r`` bounds the prior's pull), so it carries no
    mass at any ``eps``: ``m = theta (1 - (delta + w_q r + 20 eps) / w_sp)``, 0.25 with the
    defaults. None: no such ``m > 0``, every same-class pair counts."""
    if spatial_weight <= 0 or math.isinf(quality_bound):
        return None
    m = iou_threshold * (1.0 - (dustbin_cost + quality_bound + _MARGIN * eps) / spatial_weight)
    return m if m > 1e-6 else None


def appearance_cost(dissim: Tensor, margin: float) -> Tensor:
    """``relu(d - mu) / (1 - mu)`` of the embedding dissimilarity ``d = 1 - cos`` (``[0, 2]``)."""
    if margin == 0.0:
        return dissim
    return torch.relu(dissim - margin) / (1.0 - margin)


def quality_prior(log_ratio: Tensor, weight: float, saturation: float) -> Tensor:
    """``w_q r tanh(log_ratio / r)``: the quality prior, odd and strictly increasing in
    ``log_ratio = log s_i - log s_seed`` and bounded by ``w_q r`` (raw for ``r = inf``)."""
    if math.isinf(saturation):
        return weight * log_ratio
    return (weight * saturation) * torch.tanh(log_ratio / saturation)


def neighbourhood_reach(overlap: OverlapKind, nwd_scale: float, floor: float | None) -> float:
    """Interval half-width per unit of box size that holds every pair with sigma >= floor."""
    if floor is None:
        return math.inf  # every same-class pair
    if overlap in ("iou", "diou"):
        return 0.0  # disjoint boxes have IoU 0 and DIoU < 0
    return nwd_scale * math.log(1.0 / floor) * (1.0 + 1e-3)  # slack for rounding
