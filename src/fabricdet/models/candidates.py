"""Candidate selection: the top-scoring (location, class) pairs of each image, fixed count."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fabricdet.models.head import HeadOutput, candidate_scores, decode_boxes


class Candidates(NamedTuple):
    """``M`` candidates per image (padded; ``mask`` marks the real ones).

    Attributes:
        boxes (Tensor[B, M, 4]): xyxy, clipped to the image.
        scores (Tensor[B, M]): class probabilities (differentiable).
        labels (Tensor[B, M] int64).
        embeddings (Tensor[B, M, D]).
        mask (Tensor[B, M] bool): above the score threshold and inside the image.
        locations (Tensor[B, M] int64 or None): each candidate's index among the head's
            ``A`` locations (to read its other outputs, e.g. the IoU quality, in diagnostics).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    embeddings: Tensor
    mask: Tensor
    locations: Tensor | None = None


def select_candidates(
    out: HeadOutput, sizes: list[tuple[int, int]] | Tensor, topk: int, score_thresh: float
) -> Candidates:
    """Top-``topk`` (location, class) pairs per image by score, with a static count.

    Locations in the batch padding (outside an image's ``(H, W)``) never qualify, nor boxes
    that clipping to the image leaves without area (``mask`` False).

    Args:
        sizes: ``(H, W)`` of each image, or ``Tensor[B, 2]`` / ``Tensor[1, 2]`` (one size for
            the whole batch). A tensor lets ``torch.jit.trace`` keep sizes computed from the
            input's shape in the graph; a list would be frozen into it as constants.
    """
    _b, a, c = out.cls_logits.shape
    scores = candidate_scores(out)
    if isinstance(sizes, Tensor):
        hw = sizes.to(dtype=out.points.dtype, device=out.points.device).reshape(-1, 2)
    else:
        hw = torch.tensor(sizes, dtype=out.points.dtype, device=out.points.device)  # [B, 2]
    inside = (out.points.unsqueeze(0) < hw.flip(1).unsqueeze(1)).all(-1)  # [B, A]
    flat = scores.masked_fill(~inside.unsqueeze(-1), -1.0).flatten(1)  # [B, A*C]
    k = min(topk, a * c)
    top_scores, top_idx = flat.detach().topk(k, dim=1)
    loc, labels = top_idx // c, top_idx % c
    cand_scores = torch.gather(scores.flatten(1), 1, top_idx)  # keeps the gradient
    dist = torch.gather(out.distances, 1, loc.unsqueeze(-1).expand(-1, -1, 4))
    boxes = decode_boxes(out.points[loc], dist)
    upper = hw.flip(1).repeat(1, 2).unsqueeze(1)  # [B, 1, 4]: W, H, W, H
    boxes = torch.minimum(boxes.clamp_min(0), upper)
    d = out.embeddings.shape[-1]
    emb = torch.gather(out.embeddings, 1, loc.unsqueeze(-1).expand(-1, -1, d))
    # A box clipped to nothing (it lay beyond the image edge) is no detection.
    area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    mask = (top_scores > score_thresh) & area
    return Candidates(boxes, cand_scores, labels, emb, mask, loc)
