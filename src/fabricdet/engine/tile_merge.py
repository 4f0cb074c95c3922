"""Merging the detections of overlapping tiles into the detections of the whole image.

A defect crossing a tile seam reaches the merge in two forms, and they need opposite treatment:

* **duplicates**: two tiles both see the same whole object (it lies in their overlap). Their
  boxes agree, and the right merge is duplicate removal: keep one (greedy NMS), average them
  (SinkhornNMS's plan-weighted fusion, WBF) or take their union (NMM).
* **pieces**: each tile sees only the part of a longer object inside it (a broken thread running
  across three tiles). Their boxes are cut at the tile borders, disagree by construction and
  overlap little (two 640 px pieces of a thread sharing a 64 px overlap have IoU 0.05), so no
  IoU threshold tells them from neighbours; averaging them would give a box in the middle of
  the thread, the wrong answer. The right merge is their union.

Which is which is known from the tile geometry, not guessed from overlaps, so the merge runs in
two steps (:func:`merge_detections`):

1. **stitch** (:func:`stitch_pieces`): a box is *truncated* on a side lying within
   ``border_tol`` pixels of an inner tile border (a border shared with another tile, not the
   image edge): the tile cut it there. A truncated box and a box of the same class from another
   tile are two views of one object when the other box carries on past the cut (by more than
   ``border_tol``), reaches back to it (no gap over ``border_tol``) and the two share their
   extent across the cut (1-D intersection over the smaller extent >= ``stitch_overlap``, so a
   parallel twin thread a few yarns away, which shares none, stays apart), and neither extent
   is under :data:`STITCH_EXTENT_RATIO` of the other: a box of the same class several times
   taller than a thin thread contains its extent but is no piece of it (a wavy thread's pieces
   differ by less; on 200 full frames the bound raised the demo's model's tiled AP50 from 0.077
   to 0.086, ``benchmarks/tiled_detect.py``). Joined boxes are
   grouped transitively (a thread over many tiles) and replaced by their union, with the best
   score of the group. A box touching no inner border takes part only as the partner of a
   truncated one: whole duplicates are left to step 2.
2. **deduplicate** with the chosen method: ``"sinkhorn"`` (default; SinkhornNMS hard decode
   with its plan-fused boxes), ``"greedy"`` (torchvision NMS), ``"nmm"`` (non-maximum merging,
   SAHI-style: from the best box down, each box absorbs the same-class boxes covering at least
   ``ios_threshold`` of the smaller one and becomes their union), or any other method of
   :data:`fabricdet.ops.nms.NMS_METHODS`.

The union in step 1 makes a stitched box as large as its largest pieces allow: jittered
duplicate pieces inflate it by their jitter (measured in ``benchmarks/tiled_inference.py``).

**Masks** (:class:`~fabricdet.engine.crop_mask.CropMask`, when given) follow the boxes: a
stitched group gets the union of its pieces' masks (each piece holds a different part of the
defect). A duplicate group gets the mask of the detection the method keeps, i.e. the best
scored: duplicates are two views of the same pixels, so their masks agree up to each view's
errors, and a union would add up both views' stray pixels, inflating exactly the area and
width the masks are measured for. NMM is the exception: its box is the union of its members,
so its mask is their union too, keeping the two consistent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from fabricdet.data.tiling import Tile
from fabricdet.engine.crop_mask import CropMask, owned_unions
from fabricdet.ops.nms import NMS_METHODS, batched_nms

#: Merge methods: non-maximum merging plus every NMS method.
MERGE_METHODS: tuple[str, ...] = (
    "sinkhorn",
    "greedy",
    "nmm",
    *(m for m in NMS_METHODS if m not in ("sinkhorn", "greedy")),
)

#: Per-method NMS options of the merge. SinkhornNMS compares boxes by IoU here, not by its
#: default (the larger of IoU and a Wasserstein similarity): that one treats parallel thin
#: boxes a few pixels apart as one object, so without embeddings twin threads crossing a seam
#: would fuse into one box between them. Whole-image duplicates of a thread from two tiles
#: come from the same pixels and overlap well by IoU.
DEFAULT_NMS_OPTIONS: dict[str, dict[str, Any]] = {"sinkhorn": {"overlap": "iou"}}


#: Smallest ratio of two pieces' extents across their cut (smaller over larger) that may join:
#: a third keeps the pieces of a wavy thread together (tested), not a thread and a box 4x taller.
STITCH_EXTENT_RATIO = 0.33


@dataclass(frozen=True)
class MergeConfig:
    """How tile detections are merged (module docstring).

    Attributes:
        method: duplicate removal, one of :data:`MERGE_METHODS`.
        iou_threshold: overlap at which boxes are duplicates (NMS methods).
        ios_threshold: intersection over the smaller box at which NMM merges.
        stitch: join pieces cut by tile borders first (False: duplicates only, for comparison).
        stitch_overlap: shared extent across the cut (over the smaller) that joins two pieces.
        border_tol: pixels from an inner tile border within which a box side counts as cut,
            and the largest gap bridged between two pieces.
        nms_options: options of the NMS method; None: :data:`DEFAULT_NMS_OPTIONS`.
    """

    method: str = "sinkhorn"
    iou_threshold: float = 0.5
    ios_threshold: float = 0.5
    stitch: bool = True
    stitch_overlap: float = 0.5
    border_tol: float = 8.0
    nms_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.method not in MERGE_METHODS:
            raise ValueError(
                f"unknown merge method {self.method!r}; choose one of {', '.join(MERGE_METHODS)}"
            )
        for name in ("iou_threshold", "ios_threshold", "stitch_overlap"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not self.border_tol >= 0:
            raise ValueError(f"border_tol must be >= 0 pixels, got {self.border_tol}")


@dataclass(frozen=True)
class Detections:
    """Detections of one image (or roll), sorted by decreasing score.

    Attributes:
        boxes (Tensor[K, 4] float32): xyxy, image pixels.
        scores (Tensor[K] float32).
        labels (Tensor[K] int64): model labels.
        masks: one mask per detection (None where there is none), or None for box-only
            detections.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: tuple[CropMask | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.scores)


def truncated_sides(
    boxes: np.ndarray, tile_index: np.ndarray, tiles: Sequence[Tile], tol: float
) -> np.ndarray:
    """Which sides of each box its tile cut: the side lies within ``tol`` of an inner border.

    Args:
        boxes (ndarray[N, 4]): xyxy, image pixels.
        tile_index (ndarray[N] int): the tile each box was detected in.

    Returns:
        ndarray[N, 4] bool: ``(left, top, right, bottom)``.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=bool)
    frame = np.array([[t.x0, t.y0, t.x1, t.y1] for t in tiles], dtype=np.float64)[tile_index]
    inner = np.array([t.inner for t in tiles], dtype=bool).reshape(-1, 4)[tile_index]
    near_start = boxes[:, :2] <= frame[:, :2] + tol
    near_end = boxes[:, 2:] >= frame[:, 2:] - tol
    return inner & np.concatenate([near_start, near_end], 1)


def _shared_extent(
    lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, ratio: float
) -> np.ndarray:
    """Intersection over the smaller of intervals (broadcast; 1-pixel floor on lengths), 0 where
    the smaller is under ``ratio`` of the larger."""
    len_a = np.maximum(hi_a - lo_a, 1.0)
    len_b = np.maximum(hi_b - lo_b, 1.0)
    smaller, larger = np.minimum(len_a, len_b), np.maximum(len_a, len_b)
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    return np.where(smaller >= ratio * larger, inter / smaller, 0.0)


def stitch_edges(
    boxes: np.ndarray,
    labels: np.ndarray,
    tile_index: np.ndarray,
    cut: np.ndarray,
    min_overlap: float,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of boxes that are pieces of one object cut by a tile border (module docstring).

    Args:
        boxes (ndarray[N, 4]), labels (ndarray[N]), tile_index (ndarray[N]): pooled detections.
        cut (ndarray[N, 4] bool): :func:`truncated_sides`.

    Returns:
        (i, j): ndarray[E] int each, box ``i`` cut on a side that box ``j`` carries on past.
    """
    cut_rows = np.flatnonzero(cut.any(1))
    # Chunks of cut boxes from one tile, so that each chunk is compared only with the boxes
    # near it (below): a roll's detections are compared locally, not all with all.
    cut_rows = cut_rows[np.lexsort((boxes[cut_rows, 0], tile_index[cut_rows]))]
    found = [
        _stitch_rows(boxes, labels, tile_index, cut, cut_rows[k : k + _CHUNK], min_overlap, tol)
        for k in range(0, len(cut_rows), _CHUNK)
    ]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    order = np.lexsort((j, i))
    return i[order], j[order]


#: Cut boxes compared at once (bounds the [T, M] temporaries of a crowded roll).
_CHUNK = 128


def _stitch_rows(
    boxes: np.ndarray,
    labels: np.ndarray,
    tile_index: np.ndarray,
    cut: np.ndarray,
    cut_rows: np.ndarray,
    min_overlap: float,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stitch_edges` for the cut boxes ``cut_rows`` against every box they may pair with."""
    near = np.arange(len(boxes))
    if min_overlap > 0:
        # A pair's boxes overlap on one axis (the IoS test) and meet within tol on the other,
        # so a partner lies in the chunk's bounding box widened by tol.
        lo = boxes[cut_rows, :2].min(0) - tol
        hi = boxes[cut_rows, 2:].max(0) + tol
        near = np.flatnonzero(((boxes[:, 2:] >= lo) & (boxes[:, :2] <= hi)).all(1))
    return _stitch_pairs(boxes, labels, tile_index, cut, cut_rows, near, min_overlap, tol)


def _stitch_pairs(
    boxes: np.ndarray,
    labels: np.ndarray,
    tile_index: np.ndarray,
    cut: np.ndarray,
    cut_rows: np.ndarray,
    near: np.ndarray,
    min_overlap: float,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The stitching test of the cut boxes ``cut_rows`` against the boxes ``near``."""
    a = boxes[cut_rows][:, None, :]  # [T, 1, 4]
    b = boxes[near][None, :, :]  # [1, M, 4]
    candidate = (labels[cut_rows][:, None] == labels[near][None, :]) & (
        tile_index[cut_rows][:, None] != tile_index[near][None, :]
    )
    share_y = _shared_extent(a[..., 1], a[..., 3], b[..., 1], b[..., 3], STITCH_EXTENT_RATIO)
    share_x = _shared_extent(a[..., 0], a[..., 2], b[..., 0], b[..., 2], STITCH_EXTENT_RATIO)
    c = cut[cut_rows][:, None, :]
    left = c[..., 0] & (b[..., 0] < a[..., 0] - tol) & (b[..., 2] >= a[..., 0] - tol)
    right = c[..., 2] & (b[..., 2] > a[..., 2] + tol) & (b[..., 0] <= a[..., 2] + tol)
    top = c[..., 1] & (b[..., 1] < a[..., 1] - tol) & (b[..., 3] >= a[..., 1] - tol)
    bottom = c[..., 3] & (b[..., 3] > a[..., 3] + tol) & (b[..., 1] <= a[..., 3] + tol)
    across_x = (left | right) & (share_y >= min_overlap)
    across_y = (top | bottom) & (share_x >= min_overlap)
    ti, tj = np.nonzero(candidate & (across_x | across_y))
    return cut_rows[ti], near[tj]


def stitch_groups(
    boxes: Tensor,
    labels: Tensor,
    tile_index: Tensor,
    tiles: Sequence[Tile],
    min_overlap: float = 0.5,
    tol: float = 8.0,
) -> tuple[int, np.ndarray]:
    """The groups of pieces of one cut object (:func:`stitch_pieces` joins each group).

    Returns:
        ``(count, group)``: the number of groups and ``group`` (ndarray[N] int), the group of
        each box in ``0..count-1``; without any joined pair, ``count == N`` and the groups are
        the boxes in order.
    """
    n = len(labels)
    identity = (n, np.arange(n))
    if n == 0:
        return identity
    b = boxes.detach().cpu().double().numpy()
    lab = labels.detach().cpu().numpy()
    tix = tile_index.detach().cpu().numpy()
    i, j = stitch_edges(b, lab, tix, truncated_sides(b, tix, tiles, tol), min_overlap, tol)
    if len(i) == 0:
        return identity
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    count, group = connected_components(graph, directed=False)
    return int(count), group


def stitch_pieces(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    tile_index: Tensor,
    tiles: Sequence[Tile],
    min_overlap: float = 0.5,
    tol: float = 8.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Replace each group of pieces of one cut object by their union (module docstring, step 1).

    Args:
        boxes (Tensor[N, 4]): xyxy, image pixels.
        scores (Tensor[N]), labels (Tensor[N] int64), tile_index (Tensor[N] int64).
        tiles: the tiles ``tile_index`` points into.

    Returns:
        boxes (Tensor[M, 4]), scores (Tensor[M]), labels (Tensor[M]) with ``M <= N``: a group
        becomes one box with the group's best score; other boxes are unchanged.
    """
    count, group = stitch_groups(boxes, labels, tile_index, tiles, min_overlap, tol)
    return join_groups(boxes, scores, labels, count, group)


def join_groups(
    boxes: Tensor, scores: Tensor, labels: Tensor, count: int, group: np.ndarray
) -> tuple[Tensor, Tensor, Tensor]:
    """Each of ``count`` groups (``group``: ndarray[N] int, from :func:`stitch_groups`) as one
    box, the union of its boxes, with their best score; unchanged when no group joins two."""
    if count == len(scores):
        return boxes, scores, labels
    g = torch.from_numpy(group).to(boxes.device)
    out_lo = torch.full((count, 2), float("inf"), dtype=boxes.dtype, device=boxes.device)
    out_hi = torch.full((count, 2), float("-inf"), dtype=boxes.dtype, device=boxes.device)
    out_lo = out_lo.scatter_reduce(0, g[:, None].expand(-1, 2), boxes[:, :2], "amin")
    out_hi = out_hi.scatter_reduce(0, g[:, None].expand(-1, 2), boxes[:, 2:], "amax")
    out_scores = scores.new_full((count,), float("-inf")).scatter_reduce(0, g, scores, "amax")
    out_labels = labels.new_zeros(count).scatter(0, g, labels)  # one label per group
    return torch.cat([out_lo, out_hi], 1), out_scores, out_labels


def non_maximum_merge(
    boxes: Tensor, scores: Tensor, labels: Tensor, ios_threshold: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy non-maximum merging (SAHI's NMM): from the best-scored box down, each box not yet
    merged absorbs the same-class boxes not yet merged whose intersection covers at least
    ``ios_threshold`` of the smaller of the two, and becomes their union with its own score.

    Args:
        boxes (Tensor[N, 4]): xyxy. scores (Tensor[N]). labels (Tensor[N] int64).

    Returns:
        boxes (Tensor[K, 4]), scores (Tensor[K]), labels (Tensor[K]), by decreasing score.
    """
    merged, kept_scores, kept_labels, _ = _nmm(boxes, scores, labels, ios_threshold)
    return merged, kept_scores, kept_labels


def _nmm(
    boxes: Tensor, scores: Tensor, labels: Tensor, ios_threshold: float
) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """:func:`non_maximum_merge`, plus ``owner`` (ndarray[N] int): the output each input box
    went into."""
    order = torch.argsort(scores, descending=True, stable=True)
    b, s, lab = boxes[order], scores[order], labels[order]
    area = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    free = torch.ones(len(s), dtype=torch.bool, device=b.device)
    owner = np.zeros(len(s), dtype=np.int64)
    out: list[Tensor] = []
    starts: list[int] = []
    for k in range(len(s)):  # one vector step per kept box: O(N K)
        if not bool(free[k]):
            continue
        lt = torch.maximum(b[k, :2], b[:, :2])
        rb = torch.minimum(b[k, 2:], b[:, 2:])
        inter = (rb - lt).clamp_min(0).prod(1)
        ios = inter / torch.minimum(area[k], area).clamp_min(1e-6)
        members = free & (lab == lab[k]) & (ios >= ios_threshold)
        members[k] = True
        free &= ~members
        owner[order[members].cpu().numpy()] = len(starts)
        mb = b[members]
        out.append(torch.cat([mb[:, :2].amin(0), mb[:, 2:].amax(0)]))
        starts.append(k)
    index = torch.tensor(starts, dtype=torch.long, device=b.device)
    merged = torch.stack(out) if out else b[:0]
    return merged, s[index], lab[index], owner


def merge_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    tile_index: Tensor,
    tiles: Sequence[Tile],
    config: MergeConfig | None = None,
    *,
    masks: Sequence[CropMask | None] | None = None,
) -> Detections:
    """The detections of the whole image from those of its tiles (module docstring).

    Args:
        boxes (Tensor[N, 4] float32): xyxy in image pixels (tile boxes shifted by their tile).
        scores (Tensor[N]), labels (Tensor[N] int64).
        tile_index (Tensor[N] int64): the tile of each box, an index into ``tiles``.
        tiles: the tile grid.
        config: the merge; default :class:`MergeConfig` (stitch, then SinkhornNMS).
        masks: ``N`` masks in image pixels (None entries: no mask), or None.

    Returns:
        The merged detections, by decreasing score; with ``masks`` when given.
    """
    config = config or MergeConfig()
    boxes = boxes.float().reshape(-1, 4)
    scores = scores.float().reshape(-1)
    labels = labels.long().reshape(-1)
    n = len(scores)
    if masks is not None and len(masks) != n:
        raise ValueError(f"got {len(masks)} masks for {n} detections")
    group = np.arange(n)  # the stitched box each input box went into
    if config.stitch:
        tix = tile_index.long().reshape(-1)
        count, group = stitch_groups(
            boxes, labels, tix, tiles, config.stitch_overlap, config.border_tol
        )
        boxes, scores, labels = join_groups(boxes, scores, labels, count, group)
    if len(scores) == 0:
        return Detections(boxes, scores, labels, () if masks is not None else None)
    if config.method == "nmm":
        boxes, scores, labels, owner = _nmm(boxes, scores, labels, config.ios_threshold)
        return Detections(boxes, scores, labels, owned_unions(masks, owner[group], len(scores)))
    result = batched_nms(
        boxes,
        scores,
        labels,
        config.iou_threshold,
        method=config.method,
        return_result=True,
        **dict(
            DEFAULT_NMS_OPTIONS.get(config.method, {})
            if config.nms_options is None
            else config.nms_options
        ),
    )
    keep, kept_scores, kept_boxes = result  # type: ignore[misc]
    owner = np.full(len(scores), -1, dtype=np.int64)  # dropped duplicates own nothing
    owner[keep.cpu().numpy()] = np.arange(len(keep))
    merged_masks = owned_unions(masks, owner[group], len(keep))
    return Detections(kept_boxes.float(), kept_scores.float(), labels[keep], merged_masks)
