"""Size of one defect from its mask, RLE or box: area, length, width, orientation, box.

Every measure exists twice: in pixels, and in millimetres given the camera's pitch. A
line-scan camera's pitch across the roll (``mm_per_px_x``, image columns) and along it
(``mm_per_px_y``, image rows) may differ, so millimetres are not pixels times one factor:
the geometry is measured again on the physical grid (each skeleton step, each rectangle
corner and each second moment scaled per axis), which is exact for any pitch ratio.

How length and width are taken depends on the shape, decided on the physical grid:

* **thin** (threads, broken ends, creases): the mask is much longer than its mean width,
  ``skeleton_length**2 / area >= thin_elongation`` (default 8; a band of length L and width
  w scores about L / w: a bar thins to its centre line, half a width short at each end; a
  disc or a 2:1 rectangle scores under 1, a 10:1 bar about 8). ``skeleton_length`` sums all
  the skeleton's pieces, so a dashed thread is thin too. Length follows the skeleton, so
  curved threads count in full: the longest skeleton path measured by chords, plus the
  half pixel beyond each end centre. Where the mask fills its minimum-area rectangle
  (``area >= straight_fill * long * short``, a straight band) the rectangle's long side is
  exact and is used instead: the skeleton of a wide band stops short of its ends. Otherwise
  the larger of skeleton and rectangle is used, the rectangle catching the ends thinning
  shortens and the gaps of a dashed thread. Width is ``area / length``, the mean width.
* **blob** (stains, holes, knots): the long and short sides of the minimum-area rectangle.
* **empty**: every measure 0.

Orientation is the principal axis of the pixels (second moments), in degrees [0, 180)
from the image's +x axis (across the roll) towards +y (down the image, along the roll).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fabricdet.data.formats.rle import Rle, decode_mask
from fabricdet.inspect.extent import min_area_rect_sides, principal_axis_deg
from fabricdet.inspect.skeleton import CHORD_PX, chord_length, skeleton_of, trace_skeleton

ShapeKind = Literal["empty", "thin", "blob", "box"]
Box = tuple[float, float, float, float]

#: ``skeleton_length**2 / area`` at or above which a defect is thin (see the module doc).
THIN_ELONGATION = 8.0

#: Fraction of its minimum-area rectangle a thin defect fills to count as a straight band.
STRAIGHT_FILL = 0.7


@dataclass(frozen=True)
class DefectMeasure:
    """Size of one defect, in pixels and in millimetres.

    Attributes:
        kind: the rule that measured it: ``"thin"``, ``"blob"``, ``"empty"`` (no pixels) or
            ``"box"`` (from a box only, see :func:`measure_box`).
        area_px, length_px, width_px: pixel count (box: box area) and sizes in pixel steps.
        orientation_deg: direction of the length on the pixel grid, degrees [0, 180) from +x
            towards +y (0 = across the image, 90 = along it).
        bbox_px: tight ``(x0, y0, x1, y1)`` box on pixel edges (zeros when empty).
        area_mm2, length_mm, width_mm, orientation_mm_deg, bbox_mm: the same on the fabric,
            with the pitch applied per axis (orientations differ when the pitches do).
    """

    kind: ShapeKind
    area_px: float
    length_px: float
    width_px: float
    orientation_deg: float
    bbox_px: Box
    area_mm2: float
    length_mm: float
    width_mm: float
    orientation_mm_deg: float
    bbox_mm: Box


@dataclass(frozen=True)
class _Size:
    """Area, length, width and orientation on one grid (pixels or millimetres)."""

    area: float
    length: float
    width: float
    orientation_deg: float


def measure_mask(
    mask: np.ndarray,
    mm_per_px_x: float = 1.0,
    mm_per_px_y: float = 1.0,
    *,
    thin_elongation: float = THIN_ELONGATION,
    straight_fill: float = STRAIGHT_FILL,
) -> DefectMeasure:
    """Measure one defect from its binary mask.

    Args:
        mask (ndarray[H, W]): nonzero = defect; several pieces are measured as one defect.
        mm_per_px_x: millimetres per pixel across the image (columns).
        mm_per_px_y: millimetres per pixel along the image (rows).
        thin_elongation, straight_fill: the shape rules (see the module doc).

    Raises:
        ValueError: a mask that is not 2-D, or a pitch that is not a positive finite number.
    """
    _check_pitch(mm_per_px_x, mm_per_px_y)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        zeros = (0.0, 0.0, 0.0, 0.0)
        return DefectMeasure("empty", 0.0, 0.0, 0.0, 0.0, zeros, 0.0, 0.0, 0.0, 0.0, zeros)
    x0, y0 = int(cols.min()), int(rows.min())
    x1, y1 = int(cols.max()) + 1, int(rows.max()) + 1
    # Work on the defect's box with a one-pixel margin: thinning and contours then cost the
    # defect's size, not the image's, and never touch the array border.
    crop = np.zeros((y1 - y0 + 2, x1 - x0 + 2), dtype=bool)
    crop[rows - y0 + 1, cols - x0 + 1] = True
    rows, cols = rows - y0 + 1, cols - x0 + 1
    skeleton = skeleton_of(crop)

    # The shape is physical, so the thin/blob decision is taken on the millimetre grid and
    # then applied to the pixel grid too, keeping both measures of one defect comparable.
    mm, kind = _size_on_grid(
        crop, skeleton, rows, cols, mm_per_px_x, mm_per_px_y, None, thin_elongation, straight_fill
    )
    px, _ = _size_on_grid(crop, skeleton, rows, cols, 1.0, 1.0, kind, 0.0, straight_fill)
    return DefectMeasure(
        kind=kind,
        area_px=px.area,
        length_px=px.length,
        width_px=px.width,
        orientation_deg=px.orientation_deg,
        bbox_px=(float(x0), float(y0), float(x1), float(y1)),
        area_mm2=mm.area,
        length_mm=mm.length,
        width_mm=mm.width,
        orientation_mm_deg=mm.orientation_deg,
        bbox_mm=(x0 * mm_per_px_x, y0 * mm_per_px_y, x1 * mm_per_px_x, y1 * mm_per_px_y),
    )


def measure_rle(
    rle: Rle,
    mm_per_px_x: float = 1.0,
    mm_per_px_y: float = 1.0,
    *,
    thin_elongation: float = THIN_ELONGATION,
    straight_fill: float = STRAIGHT_FILL,
) -> DefectMeasure:
    """Measure one defect from a COCO RLE (``{"size": [H, W], "counts": str | bytes}``).

    Same as :func:`measure_mask` on the decoded mask.
    """
    return measure_mask(
        decode_mask(rle),
        mm_per_px_x,
        mm_per_px_y,
        thin_elongation=thin_elongation,
        straight_fill=straight_fill,
    )


def measure_box(box: Box, mm_per_px_x: float = 1.0, mm_per_px_y: float = 1.0) -> DefectMeasure:
    """Measure a defect known only by its axis-aligned box (a detection without a mask).

    Length is the box's long side and width its short side, orientation 0 (wider than high)
    or 90. Threads run along the warp or the weft, i.e. along an image axis, so for them the
    long side is the length; the diagonal would overstate blobs by up to 41 % (a square),
    while the long side understates a thread at 45° by 29 %, the rarer case. Area is the box
    area, an upper bound. On the millimetre grid the long side may be the other axis.

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels, ``x1 >= x0`` and ``y1 >= y0``.

    Raises:
        ValueError: a box with non-finite or reversed coordinates, or a bad pitch.
    """
    _check_pitch(mm_per_px_x, mm_per_px_y)
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x1 >= x0 and y1 >= y0, got {box!r}")
    px = _box_size(x1 - x0, y1 - y0)
    mm = _box_size((x1 - x0) * mm_per_px_x, (y1 - y0) * mm_per_px_y)
    return DefectMeasure(
        kind="box",
        area_px=px.area,
        length_px=px.length,
        width_px=px.width,
        orientation_deg=px.orientation_deg,
        bbox_px=(x0, y0, x1, y1),
        area_mm2=mm.area,
        length_mm=mm.length,
        width_mm=mm.width,
        orientation_mm_deg=mm.orientation_deg,
        bbox_mm=(x0 * mm_per_px_x, y0 * mm_per_px_y, x1 * mm_per_px_x, y1 * mm_per_px_y),
    )


def _box_size(width: float, height: float) -> _Size:
    """Size of an axis-aligned box of the given sides."""
    return _Size(
        area=width * height,
        length=max(width, height),
        width=min(width, height),
        orientation_deg=0.0 if width >= height else 90.0,
    )


def _size_on_grid(
    crop: np.ndarray,
    skeleton: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    pitch_x: float,
    pitch_y: float,
    kind: ShapeKind | None,
    thin_elongation: float,
    straight_fill: float,
) -> tuple[_Size, ShapeKind]:
    """Size of a non-empty defect on a grid of the given pitch.

    Args:
        crop (ndarray[H, W] of bool): the defect, with a background margin.
        skeleton (ndarray[H, W] of bool): its skeleton.
        rows, cols (ndarray[N] of int): its pixels in ``crop``.
        kind: the shape rule to apply, or None to decide it here with ``thin_elongation``.

    Returns:
        The size, and the kind that measured it.
    """
    area = rows.size * pitch_x * pitch_y
    orientation = principal_axis_deg(rows, cols, pitch_x, pitch_y)
    long_side, short_side = min_area_rect_sides(crop, pitch_x, pitch_y)
    axis = math.radians(orientation)
    trace = trace_skeleton(skeleton, pitch_x, pitch_y)
    if kind is None:
        # Every piece counts towards thinness (a dashed thread is thin); the step-count
        # lengths used here overstate by up to 8 %, immaterial to a threshold this coarse.
        end_cells = abs(math.cos(axis)) * pitch_x + abs(math.sin(axis)) * pitch_y
        skeleton_total = float(trace.step_lengths.sum()) + trace.step_lengths.size * end_cells
        kind = "thin" if skeleton_total**2 >= thin_elongation * area else "blob"
    if kind == "blob" or trace.longest.size == 0:
        return _Size(area, long_side, short_side, orientation), "blob"
    if area >= straight_fill * long_side * short_side:
        length = long_side
    else:
        skeleton_length = _path_length(trace.longest, pitch_x, pitch_y, axis)
        length = max(skeleton_length, long_side)
    return _Size(area, length, area / length, orientation), "thin"


def _path_length(path: np.ndarray, pitch_x: float, pitch_y: float, axis_rad: float) -> float:
    """Physical length of a skeleton path, pixel cell ends included.

    The path joins pixel centres; the defect goes on to the far side of the end pixels, half
    a cell measured along the path's direction there: ``(|ux| pitch_x + |uy| pitch_y) / 2``.

    Args:
        path (ndarray[P, 2] of int): (row, col) along the path, P >= 1.
        axis_rad: the defect's main axis, the direction of a one-pixel path.
    """
    length = chord_length(path, pitch_x, pitch_y)
    last = len(path) - 1
    for end, inner in ((0, min(CHORD_PX, last)), (last, max(last - CHORD_PX, 0))):
        d_y = float(path[end, 0] - path[inner, 0]) * pitch_y
        d_x = float(path[end, 1] - path[inner, 1]) * pitch_x
        norm = math.hypot(d_x, d_y)
        u_x, u_y = (
            (d_x / norm, d_y / norm) if norm > 0 else (math.cos(axis_rad), math.sin(axis_rad))
        )
        length += 0.5 * (abs(u_x) * pitch_x + abs(u_y) * pitch_y)
    return length


def _check_pitch(mm_per_px_x: float, mm_per_px_y: float) -> None:
    for name, value in (("mm_per_px_x", mm_per_px_x), ("mm_per_px_y", mm_per_px_y)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
