"""Box-supervised mask losses (BoxInst) and the fully supervised pair, on per-instance grids.

Every function takes a batch of instances on one fixed grid (``[N, H, W]``), so a whole batch
of instances is one tensor op: no loop over instances or pixels.

- :func:`projection_loss`: the mask's max-projections on the x and y axes must match the
  box's (a mask filling exactly its box has zero loss). Tversky's index generalises Dice:
  ``beta > alpha`` weighs misses over false alarms, which keeps one-pixel threads from
  vanishing (their projection on the thread's own axis is a single bin).
- :func:`pairwise_loss`: neighbours with similar (texture-suppressed) appearance should share
  a label: ``-log P(same) = -log(p_i p_j + (1 - p_i)(1 - p_j))``, averaged over the edges whose
  similarity reaches a threshold and whose centre lies in the box.
- :func:`confidence_weighted_bce`: BCE towards the refined mask, each pixel weighted by the
  refinement's confidence ``1 - uncertainty`` (self-training where the evidence agrees).
- :func:`mask_bce_dice`: full supervision (``data.masks=full``): BCE + Dice on true masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricdet.masks.texture import neighbour_valid, neighbours


def tversky_loss(
    pred: Tensor, target: Tensor, alpha: float = 0.5, beta: float = 0.5, eps: float = 1e-6
) -> Tensor:
    """``1 - TP / (TP + alpha FP + beta FN)`` per row (soft counts); Dice at 0.5/0.5.

    Args:
        pred (Tensor[N, L]) probabilities, target (Tensor[N, L]) in [0, 1].

    Returns:
        Tensor[N].
    """
    tp = (pred * target).sum(-1)
    fp = (pred * (1 - target)).sum(-1)
    fn = ((1 - pred) * target).sum(-1)
    return 1.0 - (tp + eps) / (tp + alpha * fp + beta * fn + eps)


def projection_loss(
    probs: Tensor, box_masks: Tensor, alpha: float = 0.5, beta: float = 0.5
) -> Tensor:
    """Projection loss of BoxInst on both axes.

    Args:
        probs (Tensor[N, H, W]): mask probabilities.
        box_masks (Tensor[N, H, W]): 1 inside each instance's box, 0 outside.
        alpha, beta: Tversky weights of false alarms and misses.

    Returns:
        Tensor[N]: the loss of each instance (x and y projections summed).
    """
    if probs.numel() == 0:
        return probs.new_zeros(probs.shape[0])
    lx = tversky_loss(probs.amax(1), box_masks.amax(1), alpha, beta)  # onto the x axis
    ly = tversky_loss(probs.amax(2), box_masks.amax(2), alpha, beta)  # onto the y axis
    return lx + ly


def pairwise_loss(
    logits: Tensor,
    affinity: Tensor,
    box_masks: Tensor,
    threshold: float = 0.3,
    dilation: int = 2,
) -> Tensor:
    """BoxInst's pairwise affinity loss, in log space (stable for confident logits).

    Args:
        logits (Tensor[N, H, W]): mask logits.
        affinity (Tensor[N, 8, H, W]): neighbour similarity in [0, 1]
            (:func:`~fabricdet.masks.texture.neighbour_affinity` at the same ``dilation``).
        box_masks (Tensor[N, H, W]): 1 inside the box.
        threshold: edges with similarity below it carry no loss (they may be boundaries);
            edges to neighbours beyond the grid carry none either.

    Returns:
        Tensor[N]: mean ``-log P(same label)`` over each instance's counted edges (0 when an
        instance has none).
    """
    if logits.numel() == 0:
        return logits.new_zeros(logits.shape[0])
    z = logits.unsqueeze(1)  # [N, 1, H, W]
    nb = neighbours(z, dilation)[:, 0]  # [N, 8, H, W]
    log_fg, log_bg = F.logsigmoid(z), F.logsigmoid(-z)
    log_same = torch.logaddexp(log_fg + F.logsigmoid(nb), log_bg + F.logsigmoid(-nb))
    valid = neighbour_valid(logits.shape[-2], logits.shape[-1], dilation, logits.device)
    weight = (affinity >= threshold).to(logits.dtype) * box_masks.unsqueeze(1) * valid
    return -(log_same * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1.0)


def confidence_weighted_bce(logits: Tensor, target: Tensor, confidence: Tensor) -> Tensor:
    """BCE towards ``target`` with per-pixel weights (normalised by their sum per instance).

    Args:
        logits (Tensor[N, H, W]); target, confidence (Tensor[N, H, W]) in [0, 1], no gradient.

    Returns:
        Tensor[N].
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * confidence).sum((1, 2)) / confidence.sum((1, 2)).clamp_min(1e-6)


def mask_bce_dice(logits: Tensor, target: Tensor) -> Tensor:
    """Fully supervised loss: mean BCE + soft Dice, per instance.

    Args:
        logits (Tensor[N, H, W]); target (Tensor[N, H, W]) in [0, 1].

    Returns:
        Tensor[N].
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2))
    dice = tversky_loss(logits.sigmoid().flatten(1), target.flatten(1))
    return bce + dice
