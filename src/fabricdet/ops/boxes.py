"""Box similarities for xyxy boxes, batched over leading dimensions.

The ``pairwise_*`` functions take ``boxes1 (Tensor[..., N, 4])`` and
``boxes2 (Tensor[..., M, 4])`` in ``(x1, y1, x2, y2)`` absolute pixels and return
``Tensor[..., N, M]``; :func:`elementwise_overlap` takes two ``Tensor[..., 4]`` of matched
pairs (an edge list) and returns ``Tensor[...]``. Both share one formula per measure, so they
agree bit for bit. Zero-area boxes are allowed (their IoU with anything is 0, never NaN).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

OverlapKind = Literal["iou", "diou", "nwd", "iou+nwd"]

_EPS = 1e-9
#: Default scale of :func:`pairwise_nwd`: thin duplicates offset by a thickness merge, parallel
#: threads a few thicknesses apart do not (its docstring).
NWD_SCALE = 0.2
_MIN_LOG_NWD = -80.0


def tracing() -> bool:
    """Whether the code runs under ``torch.compile`` or a trace (export), where data-dependent
    branches and host-side shortcuts are not allowed."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a ValueError naming ``name`` if ``tensor`` holds NaN or inf (one host sync).

    Skipped while tracing for ``torch.compile`` or export, where a data-dependent branch is not
    allowed; validation is the eager path's job.
    """
    if tracing():
        return
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains NaN or inf (first at index {bad}); filter non-finite "
            f"detections before NMS"
        )


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes, 0 for degenerate ones. ``boxes (Tensor[..., 4]) -> Tensor[...]``."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp_min(0)
    return wh[..., 0] * wh[..., 1]


class _Terms(NamedTuple):
    """Per-box terms of the similarities, each broadcastable to the output shape."""

    x1: Tensor
    y1: Tensor
    x2: Tensor
    y2: Tensor
    w: Tensor
    h: Tensor
    cx: Tensor
    cy: Tensor
    area: Tensor
    size: Tensor


def box_terms(boxes: Tensor) -> Tensor:
    """Per-box terms, ``boxes (Tensor[..., 4]) -> Tensor[10, ...]``: x1, y1, x2, y2, width,
    height, centre x, centre y, area, size ``sqrt(area)`` (sizes clamped at 0).

    Computing them once per box rather than once per pair is what makes the pairwise and
    edge-list similarities cheap; the leading axis makes each term a contiguous row, so an
    edge list gathers all of them with one ``index_select`` along dim 1.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = (x2 - x1).clamp_min(0), (y2 - y1).clamp_min(0)
    area = w * h
    size = torch.sqrt(area + _EPS)  # shifted: sqrt'(0) is infinite, zero-area boxes train too
    return torch.stack([x1, y1, x2, y2, w, h, (x1 + x2) / 2, (y1 + y2) / 2, area, size])


def _split(boxes1: Tensor, boxes2: Tensor) -> tuple[_Terms, _Terms]:
    """Terms as ``[..., N, 1]`` and ``[..., 1, M]`` columns: pairwise ops then broadcast to
    ``[..., N, M]`` without the ``[..., N, M, 2]`` intermediates (about 2x faster on CPU)."""
    return (_Terms(*box_terms(boxes1).unsqueeze(-1)), _Terms(*box_terms(boxes2).unsqueeze(-2)))


def _iou(a: _Terms, b: _Terms) -> Tensor:
    iw = (torch.minimum(a.x2, b.x2) - torch.maximum(a.x1, b.x1)).clamp_min(0)
    ih = (torch.minimum(a.y2, b.y2) - torch.maximum(a.y1, b.y1)).clamp_min(0)
    inter = iw * ih
    return inter / (a.area + b.area - inter).clamp_min(_EPS)


def _diou(a: _Terms, b: _Terms) -> Tensor:
    dx, dy = a.cx - b.cx, a.cy - b.cy
    ew = torch.maximum(a.x2, b.x2) - torch.minimum(a.x1, b.x1)
    eh = torch.maximum(a.y2, b.y2) - torch.minimum(a.y1, b.y1)
    return _iou(a, b) - (dx * dx + dy * dy) / (ew * ew + eh * eh).clamp_min(_EPS)


def _nwd(a: _Terms, b: _Terms, scale: float) -> Tensor:
    dx, dy = a.cx - b.cx, a.cy - b.cy
    w2sq = dx * dx + dy * dy + ((a.w - b.w) ** 2 + (a.h - b.h) ** 2) / 4
    size = torch.maximum(a.size, b.size)
    # sqrt'(0) is infinite: shift the argument off 0 so identical boxes have finite gradients
    # (and W2 = 0 exactly, so even identical zero-area boxes have similarity 1).
    w2 = torch.sqrt(w2sq + _EPS) - _EPS**0.5
    # Held at exp(-80) (1.8e-35) below that: exp into the denormal range takes a slow path
    # on x86 CPUs (about 8x slower), and such similarities are 0 to every user.
    return torch.exp((-w2 / (scale * size).clamp_min(_EPS)).clamp_min(_MIN_LOG_NWD))


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union, in [0, 1]."""
    return _iou(*_split(boxes1, boxes2))


def pairwise_diou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Distance-IoU: ``IoU - rho^2 / c^2`` (centre distance over enclosing diagonal), in [-1, 1]."""
    return _diou(*_split(boxes1, boxes2))


def pairwise_nwd(boxes1: Tensor, boxes2: Tensor, scale: float = NWD_SCALE) -> Tensor:
    """Normalised Gaussian-Wasserstein similarity, in (0, 1].

    Each box is the Gaussian ``N(centre, diag(w^2, h^2) / 4)``; the 2-Wasserstein distance
    between two of them is ``W2^2 = |c1 - c2|^2 + (|w1 - w2|^2 + |h1 - h2|^2) / 4``. The
    similarity is ``exp(-W2 / (scale * S))`` with ``S`` the larger size ``sqrt(w h)`` of the
    pair.

    It is what holds hair-thin boxes together where IoU is brittle: two predictions of a
    1000x3 px thread offset by 2 px laterally have IoU 0.2 but similarity 0.83. Normalising by
    the geometric-mean side rather than the longest keeps the lateral tolerance at a few
    thicknesses (similarity 0.5 at 7.6 px for that thread) rather than a fraction of the
    length: two such threads 20 px apart (two defects) score 0.16, where a longest-side
    normaliser (scale 0.1) would give 0.82 and merge them. For compact boxes IoU stays the
    larger of the two measures. It is invariant to translating and scaling all boxes. Since
    ``W2 >= |c1 - c2|``, a similarity of at least ``m`` needs centres within
    ``scale * ln(1 / m) * S`` of each other on each axis (the reach of the sparse SinkhornNMS
    neighbourhoods).
    """
    return _nwd(*_split(boxes1, boxes2), scale)


def _overlap(a: _Terms, b: _Terms, kind: str, nwd_scale: float) -> Tensor:
    if kind == "iou":
        return _iou(a, b)
    if kind == "diou":
        return _diou(a, b)
    if kind == "nwd":
        return _nwd(a, b, nwd_scale)
    if kind == "iou+nwd":
        return torch.maximum(_iou(a, b), _nwd(a, b, nwd_scale))
    raise ValueError(f"unknown overlap kind {kind!r}; use 'iou', 'diou', 'nwd' or 'iou+nwd'")


def pairwise_overlap(
    boxes1: Tensor, boxes2: Tensor, kind: OverlapKind = "iou+nwd", nwd_scale: float = NWD_SCALE
) -> Tensor:
    """The spatial similarity used by the NMS methods, ``Tensor[..., N, M]``.

    ``"iou+nwd"`` takes the larger of IoU and :func:`pairwise_nwd`: IoU governs compact boxes,
    the Wasserstein term catches duplicates of thin and long boxes.
    """
    return _overlap(*_split(boxes1, boxes2), kind, nwd_scale)


def elementwise_overlap(
    boxes1: Tensor, boxes2: Tensor, kind: OverlapKind = "iou+nwd", nwd_scale: float = NWD_SCALE
) -> Tensor:
    """:func:`pairwise_overlap` of matched pairs: ``boxes1, boxes2 (Tensor[..., 4])`` give
    ``Tensor[...]`` (row ``e`` of one against row ``e`` of the other, e.g. an edge list)."""
    return terms_overlap(box_terms(boxes1), box_terms(boxes2), kind, nwd_scale)


def terms_overlap(
    terms1: Tensor, terms2: Tensor, kind: OverlapKind = "iou+nwd", nwd_scale: float = NWD_SCALE
) -> Tensor:
    """:func:`elementwise_overlap` from :func:`box_terms`: ``terms1, terms2 (Tensor[10, ...])``
    give ``Tensor[...]``; for an edge list, gather the terms of its two ends once per box."""
    return _overlap(_Terms(*terms1), _Terms(*terms2), kind, nwd_scale)
