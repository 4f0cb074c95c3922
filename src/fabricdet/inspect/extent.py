"""Extent of a set of pixels seen as physical cells: minimum-area rectangle and main axis.

Pixel ``(row, col)`` is the cell ``[col, col + 1] x [row, row + 1]`` scaled by the pitch
(``pitch_x`` across columns, ``pitch_y`` down rows), so one pixel measures one pitch rather
than zero, and a line-scan camera's unequal pitches are measured in physical units directly.
"""

from __future__ import annotations

import cv2
import numpy as np

# Corners of a pixel cell relative to its (row, col) index, as (x, y) = (col, row) offsets.
_CELL_CORNERS = np.array([(0, 0), (1, 0), (0, 1), (1, 1)], dtype=np.int32)

# Relative gap between the principal second moments below which a shape has no main axis
# (a disc, a square): its orientation is reported as 0 instead of rounding noise.
_ISOTROPIC_TOL = 1e-9


def min_area_rect_sides(
    mask: np.ndarray, pitch_x: float = 1.0, pitch_y: float = 1.0
) -> tuple[float, float]:
    """Long and short side of the minimum-area rotated rectangle around a mask's pixel cells.

    Args:
        mask (ndarray[H, W] of bool): at least one pixel set.
        pitch_x, pitch_y: cell width / height.

    Returns:
        ``(long, short)`` in the pitch's unit; ``(max(pitch), min(pitch))`` for one pixel.
    """
    hull = _cell_hull(mask) * np.array([pitch_x, pitch_y])
    # The minimum-area rectangle has a side on a hull edge (Freeman & Shapira), so trying each
    # edge's direction is exact; done in float64 (cv2.minAreaRect works in float32).
    edges = np.roll(hull, -1, axis=0) - hull
    edges = edges[np.hypot(edges[:, 0], edges[:, 1]) > 0]
    u = edges / np.hypot(edges[:, 0], edges[:, 1])[:, None]
    along = hull @ u.T
    across = hull @ np.stack([-u[:, 1], u[:, 0]], axis=1).T
    extent_along = along.max(axis=0) - along.min(axis=0)
    extent_across = across.max(axis=0) - across.min(axis=0)
    best = int(np.argmin(extent_along * extent_across))
    side_a, side_b = float(extent_along[best]), float(extent_across[best])
    return (max(side_a, side_b), min(side_a, side_b))


def _cell_hull(mask: np.ndarray) -> np.ndarray:
    """Convex hull of a mask's pixel cells, in pixel-edge coordinates.

    Returns:
        ndarray[K, 2] of float: (x, y) hull vertices in order, K >= 4.
    """
    # The hull of the cells is the hull of the cells of the pixel-centre hull's vertices (a
    # Minkowski sum with one cell), and that hull's vertices are among the outer contours'
    # pixels: so only those are needed, not every pixel. Integer coordinates keep it exact.
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    centres = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.int32)
    hull = cv2.convexHull(centres).reshape(-1, 2)
    corners = (hull[:, None, :] + _CELL_CORNERS[None, :, :]).reshape(-1, 2).astype(np.int32)
    return cv2.convexHull(corners).reshape(-1, 2).astype(np.float64)


def principal_axis_deg(
    rows: np.ndarray, cols: np.ndarray, pitch_x: float = 1.0, pitch_y: float = 1.0
) -> float:
    """Direction of the main axis (largest second moment) of a set of pixel cells.

    Args:
        rows, cols (ndarray[N] of int): the pixels, N >= 1.
        pitch_x, pitch_y: cell width / height.

    Returns:
        Degrees in [0, 180) from the +x (column) axis towards +y (rows, i.e. down the image):
        0 runs across the image, 90 along it. 0 for shapes without a main axis.
    """
    x = cols.astype(np.float64) * pitch_x
    y = rows.astype(np.float64) * pitch_y
    dx = x - x.mean()
    dy = y - y.mean()
    # Each cell is a uniform pitch_x x pitch_y rectangle, adding pitch**2 / 12 of variance per
    # axis: a single pixel of an anisotropic camera is then elongated, as it is physically.
    c_xx = float(np.mean(dx * dx)) + pitch_x**2 / 12.0
    c_yy = float(np.mean(dy * dy)) + pitch_y**2 / 12.0
    c_xy = float(np.mean(dx * dy))
    if np.hypot(c_xx - c_yy, 2.0 * c_xy) <= _ISOTROPIC_TOL * (c_xx + c_yy):
        return 0.0
    angle = 0.5 * np.degrees(np.arctan2(2.0 * c_xy, c_xx - c_yy))
    return float(angle % 180.0)
