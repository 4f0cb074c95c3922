"""Exact defect masks: kept as small windows in fabric coordinates, mapped to the image last.

Box convention (the same everywhere in fabricdet): ``(x1, y1, x2, y2)`` in pixel-edge
coordinates, so a mask whose pixels span columns ``c0..c1`` and rows ``r0..r1`` (inclusive) has
the box ``(c0, r0, c1 + 1, r1 + 1)`` and a one-pixel mask has a box of area 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from fabricdet.data.synth.fabric import Fabric


@dataclass(frozen=True)
class RegionMask:
    """A boolean mask placed at ``(x0, y0)`` of a larger frame.

    Attributes:
        x0, y0: column and row of ``mask[0, 0]`` in the frame.
        mask (ndarray[h, w] bool): the pixels that belong to the object.
    """

    x0: int
    y0: int
    mask: np.ndarray

    def union(self, other: RegionMask) -> RegionMask:
        """The pixels in either mask."""
        x0, y0 = min(self.x0, other.x0), min(self.y0, other.y0)
        x1 = max(self.x0 + self.mask.shape[1], other.x0 + other.mask.shape[1])
        y1 = max(self.y0 + self.mask.shape[0], other.y0 + other.mask.shape[0])
        out = np.zeros((y1 - y0, x1 - x0), bool)
        for part in (self, other):
            h, w = part.mask.shape
            out[part.y0 - y0 : part.y0 - y0 + h, part.x0 - x0 : part.x0 - x0 + w] |= part.mask
        return RegionMask(x0, y0, out)


def cells_to_mask(fabric: Fabric, j0: int, i0: int, cells: np.ndarray) -> RegionMask:
    """Pixel mask of a set of crossing cells (weave edits are exact at cell level).

    Args:
        fabric: the fabric whose yarn geometry defines the cells.
        j0, i0: weft and warp index of ``cells[0, 0]``.
        cells (ndarray[nj, ni] bool): the cells that belong to the object.

    Returns:
        the mask in fabric coordinates; a pixel belongs to the cell holding its centre.
    """
    nj, ni = cells.shape
    y0 = int(np.floor(fabric.weft_edges[j0]))
    y1 = int(np.ceil(fabric.weft_edges[j0 + nj]))
    x0 = int(np.floor(fabric.warp_edges[i0]))
    x1 = int(np.ceil(fabric.warp_edges[i0 + ni]))
    ys = np.arange(y0, y1) + 0.5
    xs = np.arange(x0, x1) + 0.5
    rows = np.searchsorted(fabric.weft_edges, ys, "right") - 1 - j0
    cols = np.searchsorted(fabric.warp_edges, xs, "right") - 1 - i0
    row_ok = (rows >= 0) & (rows < nj)
    col_ok = (cols >= 0) & (cols < ni)
    picked = cells[np.clip(rows, 0, nj - 1)][:, np.clip(cols, 0, ni - 1)]
    return RegionMask(x0, y0, picked & row_ok[:, None] & col_ok[None, :])


def warp_mask(region: RegionMask, matrix: np.ndarray, size: tuple[int, int]) -> RegionMask:
    """Map a fabric-coordinate mask through the camera transform and clip it to the image.

    Args:
        region: mask in fabric coordinates.
        matrix (ndarray[2, 3] float64): the affine fabric -> image map used for the image
            (OpenCV convention: integer coordinates are pixel centres).
        size: image ``(width, height)``.

    Returns:
        the mask in image coordinates, nearest-neighbour sampled exactly where the image was
        sampled; possibly all False.
    """
    h, w = region.mask.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) - 0.5
    corners += (region.x0, region.y0)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    bx0 = max(int(np.floor(mapped[:, 0].min())) - 1, 0)
    by0 = max(int(np.floor(mapped[:, 1].min())) - 1, 0)
    bx1 = min(int(np.ceil(mapped[:, 0].max())) + 2, size[0])
    by1 = min(int(np.ceil(mapped[:, 1].max())) + 2, size[1])
    if bx1 <= bx0 or by1 <= by0:
        return RegionMask(0, 0, np.zeros((0, 0), bool))
    local = matrix.copy()
    local[:, 2] = matrix[:, :2] @ (region.x0, region.y0) + matrix[:, 2] - (bx0, by0)
    out = cv2.warpAffine(
        region.mask.astype(np.uint8),
        local,
        (bx1 - bx0, by1 - by0),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return RegionMask(bx0, by0, out.astype(bool))


def tight_box(region: RegionMask) -> tuple[float, float, float, float] | None:
    """Tight pixel-edge box ``(x1, y1, x2, y2)`` of a mask, or None when it is empty."""
    rows = np.flatnonzero(region.mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.mask.any(axis=0))
    return (
        float(region.x0 + cols[0]),
        float(region.y0 + rows[0]),
        float(region.x0 + cols[-1] + 1),
        float(region.y0 + rows[-1] + 1),
    )


def encode_rle(region: RegionMask, size: tuple[int, int]) -> dict[str, Any]:
    """COCO RLE (compressed counts as ``str``) of a mask placed in an image.

    Args:
        region: mask in image coordinates, inside the image.
        size: image ``(width, height)``.

    Returns:
        ``{"size": [height, width], "counts": str}``.
    """
    width, height = size
    full = np.zeros((height, width), np.uint8, order="F")
    h, w = region.mask.shape
    full[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.mask
    rle = mask_utils.encode(full)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}
