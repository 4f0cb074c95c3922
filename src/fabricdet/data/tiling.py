"""Tile grids: cut an image of any size into overlapping tiles a detector can take.

A grid is a list of :class:`Tile` windows, all of one size (the last tile on each axis is
moved back inside the image rather than padded, so every tile holds only real pixels and one
batch holds tiles of one shape). Starts are spread evenly, so the overlap between neighbours
is at least the requested one and as even as integer pixels allow.

Line-scan frames (e.g. 4096x256: wide across the roll, short along it) are sliced across their
width only: leave ``tile_height`` as None and each tile spans the full height.

Which sides of a tile are *inner* (shared with a neighbour, not the image edge) matters when
merging: a detection touching an inner side may be an object cut by the tile, and only part of
it (see :mod:`fabricdet.engine.tile_merge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One window of an image: pixel columns ``x0..x1-1`` and rows ``y0..y1-1``.

    Attributes:
        x0, y0, x1, y1: the window in image pixels (pixel-edge coordinates, ``x1`` exclusive).
        inner: whether each side ``(left, top, right, bottom)`` borders another tile (True) or
            is the image's own edge (False).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    inner: tuple[bool, bool, bool, bool]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's pixels of ``image`` (ndarray[H, W, ...]), a view (no copy)."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of size ``tile`` covering ``0..length`` with at least ``overlap`` shared.

    One tile (start 0) when ``tile >= length``; otherwise the fewest tiles whose neighbours
    share at least ``overlap`` pixels, the first at 0 and the last at ``length - tile``.

    Raises:
        ValueError: a non-positive length or tile, or an overlap outside ``0..tile-1``.
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(
            f"overlap must be in 0..{tile - 1} pixels (less than the tile), got {overlap}"
        )
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(k * (length - tile) / (count - 1)) for k in range(count)]


def tile_grid(
    width: int,
    height: int,
    tile_width: int,
    tile_height: int | None = None,
    overlap: int | tuple[int, int] = 0,
) -> list[Tile]:
    """Tiles covering a ``width x height`` image, row by row (top to bottom, left to right).

    Args:
        width, height: the image size.
        tile_width: tile width; the image width when larger.
        tile_height: tile height; None = the full image height (slicing across the width only,
            for line-scan frames).
        overlap: pixels shared by neighbouring tiles, one number or ``(across x, across y)``.

    Returns:
        The tiles; tiles are clipped to the image, so an image smaller than a tile is one tile.

    Raises:
        ValueError: non-positive sizes, or an overlap of a tile's size or more.
    """
    ox, oy = (overlap, overlap) if isinstance(overlap, int) else overlap
    tw = min(tile_width, width)
    th = height if tile_height is None else min(tile_height, height)
    # An axis covered by one tile has no overlap to check.
    xs = tile_starts(width, tw, ox if tw < width else 0)
    ys = tile_starts(height, th, oy if th < height else 0)
    return [
        Tile(x, y, x + tw, y + th, (x > 0, y > 0, x + tw < width, y + th < height))
        for y in ys
        for x in xs
    ]


def tile_offsets(tiles: list[Tile]) -> np.ndarray:
    """Each tile's ``(x0, y0, x0, y0)``: add to a tile's xyxy boxes to get image pixels.

    Returns:
        ndarray[T, 4] float32.
    """
    return np.array([[t.x0, t.y0, t.x0, t.y0] for t in tiles], dtype=np.float32).reshape(-1, 4)
