"""Checks of one annotated box against its image.

Boxes are xyxy in absolute pixels with pixel-edge coordinates: a box covering the whole image
is ``(0, 0, W, H)``. Coordinates up to ``tolerance`` pixels outside the image are clipped
(annotation tools often round outward); further out is an error.
"""

from __future__ import annotations

import math
from numbers import Real

from fabricdet.data.dataset import Box
from fabricdet.data.formats.problems import RecordError

#: how far (pixels) a box may stick out of its image before it is an error; it is clipped.
BOX_TOLERANCE_PX = 1.0


def as_four_numbers(values: object, what: str = "bbox") -> tuple[float, float, float, float]:
    """Four finite floats from a JSON value, or a :class:`RecordError`."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise RecordError(
            "malformed-record",
            f"{what} must be a list of 4 numbers, got {values!r}",
            f"write {what} as [x1, y1, x2, y2]" if what == "bbox" else f"write {what} as 4 numbers",
        )
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        raise RecordError(
            "malformed-record",
            f"{what} must hold numbers, got {values!r}",
            "write the coordinates as JSON numbers, not strings",
        )
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise RecordError(
            "non-finite",
            f"{what} has a NaN or infinite coordinate: {values!r}",
            "fix or remove the record; coordinates must be finite pixel positions",
        )
    return out  # type: ignore[return-value]


def check_box(
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    tolerance: float = BOX_TOLERANCE_PX,
) -> Box:
    """Validate an xyxy box against a ``width`` x ``height`` image and clip it into the image.

    Returns:
        the clipped box ``(x1, y1, x2, y2)``.

    Raises:
        RecordError: non-finite values, ``x2 <= x1`` or ``y2 <= y1``, or a box more than
            ``tolerance`` pixels outside the image.
    """
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise RecordError(
            "non-finite",
            f"box has a NaN or infinite coordinate: {list(box)}",
            "fix or remove the record; coordinates must be finite pixel positions",
        )
    if x2 <= x1 or y2 <= y1:
        raise RecordError(
            "bad-box",
            f"box {_fmt(box)} has x2 <= x1 or y2 <= y1 (empty or inverted)",
            "write boxes as [x1, y1, x2, y2] with x2 > x1 and y2 > y1",
        )
    t = tolerance
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        raise RecordError(
            "box-outside",
            f"box {_fmt(box)} lies outside the {width}x{height} image "
            f"(more than {t:g} px beyond its edge)",
            "check the box coordinates and the image (is it the right image, or rotated?)",
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise RecordError(
            "box-outside",
            f"box {_fmt(box)} has no area inside the {width}x{height} image",
            "check the box coordinates and the image",
        )
    return clipped


def _fmt(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
