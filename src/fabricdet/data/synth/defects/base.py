"""What every defect painter receives: where to put the defect and what to paint on.

A painter is a function ``paint(target, rng, place) -> RegionMask``. Weave painters take the
:class:`~fabricdet.data.synth.fabric.Fabric` (they edit its crossings before rendering), image
painters a :class:`Canvas` (the rendered fabric). Both return the defect's exact mask in fabric
coordinates and draw every random number from ``rng``, so replaying a painter with the same
generator and a shifted anchor paints a parallel twin (two adjacent broken threads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from fabricdet.data.synth.fabric import Fabric
from fabricdet.data.synth.masks import RegionMask


@dataclass(frozen=True)
class Placement:
    """Where a defect goes, in fabric coordinates.

    Attributes:
        x, y: anchor point (a spot's centre, a point on a thread defect's yarn).
        bounds: ``(x0, y0, x1, y1)`` of the part of the fabric the camera sees; thread
            defects that cross "the whole image" run from edge to edge of it and beyond.
    """

    x: float
    y: float
    bounds: tuple[int, int, int, int]


@dataclass
class Canvas:
    """A rendered window of a fabric that image painters draw on.

    Attributes:
        image (ndarray[H, W, 3] float32): linear RGB, modified in place by painters.
        x0, y0: fabric coordinates of ``image[0, 0]``.
        fabric: the fabric the window shows (read only for painters).
    """

    image: np.ndarray
    x0: int
    y0: int
    fabric: Fabric

    def clip(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int] | None:
        """Intersection of a fabric-coordinate rectangle with the canvas (fabric coordinates),
        or None when they do not meet."""
        h, w = self.image.shape[:2]
        cx0, cy0 = max(x0, self.x0), max(y0, self.y0)
        cx1, cy1 = min(x1, self.x0 + w), min(y1, self.y0 + h)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        return cx0, cy0, cx1, cy1

    def view(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The pixels of a fabric-coordinate rectangle already clipped by :meth:`clip`.

        Returns:
            view (ndarray[y1 - y0, x1 - x0, 3] float32): writable view into ``image``.
        """
        return self.image[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]


_SHIFT = 2  # OpenCV sub-pixel bits: polyline vertices on a quarter-pixel grid

#: ``paint(fabric_or_canvas, rng, place) -> RegionMask`` (see the module docstring).
Painter = Callable[..., RegionMask]


@dataclass(frozen=True)
class DefectKind:
    """A way of rendering a defect.

    Attributes:
        name: short key, e.g. ``"broken_warp"``.
        stage: ``"weave"`` painters edit the fabric before rendering, ``"image"`` painters
            draw on the rendered canvas.
        paint: the painter.
        orientation: ``"vertical"`` / ``"horizontal"`` for thread defects (these can come as
            parallel twins a few yarns apart), None otherwise.
    """

    name: str
    stage: Literal["weave", "image"]
    paint: Painter
    orientation: Literal["vertical", "horizontal"] | None = None


def sample_run(
    rng: np.random.Generator,
    centre: float,
    lo: int,
    hi: int,
    full_prob: float,
    min_len: float,
) -> tuple[float, float]:
    """Extent of a thread defect along its yarn.

    With probability ``full_prob`` it crosses the whole visible range ``[lo, hi)`` (and some
    margin, so that rotation does not cut it short); otherwise its length is log-uniform
    between ``min_len`` and the visible range, around ``centre``.

    Returns:
        ``(start, end)`` in fabric coordinates.
    """
    span = hi - lo
    if rng.random() < full_prob:
        margin = 0.1 * span + 10
        return lo - margin, hi + margin
    length = float(np.exp(rng.uniform(np.log(min(min_len, span)), np.log(span))))
    start = centre - length * rng.uniform(0.1, 0.9)
    return start, start + length


def stroke_window(canvas: Canvas, pts: np.ndarray, pad: int) -> tuple[int, int, int, int] | None:
    """Canvas window (fabric coordinates) holding points ``pts`` (ndarray[N, 2] xy) plus
    ``pad`` px, or None when it misses the canvas."""
    return canvas.clip(
        int(np.floor(pts[:, 0].min())) - pad,
        int(np.floor(pts[:, 1].min())) - pad,
        int(np.ceil(pts[:, 0].max())) + pad + 1,
        int(np.ceil(pts[:, 1].max())) + pad + 1,
    )


def draw_strokes(
    box: tuple[int, int, int, int], paths: list[np.ndarray], width: float
) -> np.ndarray:
    """Anti-aliased coverage of strands of ``width`` px along ``paths`` inside ``box``.

    Returns:
        alpha (ndarray[y1 - y0, x1 - x0] float32) in 0..1.
    """
    x0, y0, x1, y1 = box
    layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = [np.rint((p - (x0, y0)) * (1 << _SHIFT)).astype(np.int32) for p in paths]
    cv2.polylines(layer, local, False, 255, max(1, round(float(width))), cv2.LINE_AA, _SHIFT)
    return layer.astype(np.float32) / 255.0
