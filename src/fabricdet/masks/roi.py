"""Instance grids: a fixed ``M x M`` grid over each instance's (expanded) box.

Every instance, whatever its size and aspect ratio, is sampled on the same ``M x M`` grid
(Mask R-CNN's RoIAlign), so a batch of instances is one tensor and every mask operation is
vectorised. The grid is anisotropic: a 3 x 600 px thread gets 32 cells across its 3 px (plus
margin) and 32 along its length, so its width is resolved, which a fixed-stride map is not.
The box is expanded by a margin so that the grid holds pixels known to be outside the box
(the projection loss needs them, and the mask may overhang a loose or jittered box).

Coordinates are pixel edges (a box ``(0, 0, 1, 1)`` is the first pixel), xyxy.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align


def expand_boxes(boxes: Tensor, ratio: float, pad: float) -> Tensor:
    """Boxes grown by ``ratio`` of their size plus ``pad`` pixels on every side.

    Args:
        boxes (Tensor[N, 4]) xyxy.

    Returns:
        Tensor[N, 4].
    """
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp_min(0.0)
    grow = wh * ratio + pad
    return torch.cat([boxes[:, :2] - grow, boxes[:, 2:] + grow], 1)


def cell_centres(rois: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Pixel coordinates of the grid's cell centres: xs (Tensor[N, M]), ys (Tensor[N, M])."""
    t = (torch.arange(size, device=rois.device, dtype=rois.dtype) + 0.5) / size
    xs = rois[:, 0:1] + t * (rois[:, 2:3] - rois[:, 0:1])
    ys = rois[:, 1:2] + t * (rois[:, 3:4] - rois[:, 1:2])
    return xs, ys


def box_masks_on_grid(boxes: Tensor, rois: Tensor, size: int) -> Tensor:
    """1 where a grid cell's centre lies inside the box. Tensor[N, M, M] float."""
    xs, ys = cell_centres(rois, size)
    inx = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])
    iny = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])
    return (iny[:, :, None] & inx[:, None, :]).to(boxes.dtype)


def relative_coords(boxes: Tensor, rois: Tensor, size: int) -> Tensor:
    """Cell centres relative to the box centre, in box half-sizes (at least half a pixel).

    Returns:
        Tensor[N, 2, M, M]: x then y; +-1 on the box's sides.
    """
    xs, ys = cell_centres(rois, size)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = ((boxes[:, 2:] - boxes[:, :2]) / 2).clamp_min(0.5)
    rx = (xs - centre[:, 0:1]) / half[:, 0:1]  # [N, M]
    ry = (ys - centre[:, 1:2]) / half[:, 1:2]
    n = boxes.shape[0]
    return torch.stack(
        [rx[:, None, :].expand(n, size, size), ry[:, :, None].expand(n, size, size)], 1
    )


def sample_rois(
    features: Tensor, rois: Tensor, batch_index: Tensor, size: int, stride: float
) -> Tensor:
    """Features of every instance on its grid (RoIAlign, 2 x 2 samples per cell).

    Args:
        features (Tensor[B, C, H, W]) at ``stride`` pixels per cell.
        rois (Tensor[N, 4]) xyxy in input pixels; batch_index (Tensor[N]) int64 image index.

    Returns:
        Tensor[N, C, M, M].
    """
    if rois.shape[0] == 0:
        return features.new_zeros((0, features.shape[1], size, size))
    boxes = torch.cat([batch_index.to(rois.dtype)[:, None], rois], 1)
    return roi_align(
        features, boxes.to(features.dtype), (size, size), 1.0 / stride, sampling_ratio=2,
        aligned=True,
    )  # fmt: skip


def _axis_weights(rois_lo: Tensor, rois_hi: Tensor, length: int, size: int) -> Tensor:
    """Bilinear weights from grid cells to output pixels along one axis. Tensor[N, L, M]."""
    c = torch.arange(length, device=rois_lo.device, dtype=rois_lo.dtype) + 0.5  # pixel centres
    extent = (rois_hi - rois_lo).clamp_min(1e-6)
    u = (c[None, :] - rois_lo[:, None]) / extent[:, None] * size - 0.5  # [N, L] in cells
    inside = (u >= -0.5) & (u <= size - 0.5)
    u = u.clamp(0.0, size - 1.0)
    j = torch.arange(size, device=u.device, dtype=u.dtype)
    w = (1.0 - (u[:, :, None] - j).abs()).clamp_min(0.0)
    return w * inside[:, :, None]


def paste_masks(masks: Tensor, rois: Tensor, height: int, width: int) -> Tensor:
    """Grid masks pasted into the image, bilinearly, 0 outside each roi.

    Separable: ``Ry @ mask @ Rx^T`` with per-axis interpolation matrices, so the memory is
    the output's, ``N x H x W`` (a sampling grid would need twice that again).

    Args:
        masks (Tensor[N, M, M]); rois (Tensor[N, 4]) the grids' boxes.

    Returns:
        Tensor[N, H, W].
    """
    size = masks.shape[-1]
    ry = _axis_weights(rois[:, 1], rois[:, 3], height, size)  # [N, H, M]
    rx = _axis_weights(rois[:, 0], rois[:, 2], width, size)  # [N, W, M]
    return torch.bmm(torch.bmm(ry, masks), rx.transpose(1, 2))


def boxes_from_masks(masks: Tensor, fallback: Tensor, threshold: float = 0.5) -> Tensor:
    """Tight pixel-edge boxes of ``masks >= threshold``; ``fallback`` where a mask is empty.

    Args:
        masks (Tensor[N, H, W]); fallback (Tensor[N, 4]).

    Returns:
        Tensor[N, 4] xyxy.
    """
    on = masks >= threshold
    rows, cols = on.any(2), on.any(1)  # [N, H], [N, W]
    h, w = masks.shape[-2:]
    y1 = rows.float().argmax(1)
    y2 = h - rows.flip(1).float().argmax(1)
    x1 = cols.float().argmax(1)
    x2 = w - cols.flip(1).float().argmax(1)
    tight = torch.stack([x1, y1, x2, y2], 1).to(fallback.dtype)
    return torch.where(rows.any(1, keepdim=True), tight, fallback)
