"""Painted test images for the tiling and roll tests, and the painted detector that finds
them (``tests/serve/serve_models.py``, reused: colour channel = label, connected components =
boxes, so on a tile it reports the painted rectangles clipped to the tile)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

from serve_models import (
    CATS,
    PaintedDetector,
    build_painted,
    save_painted_model,
)

from fabricdet.engine import preset

__all__ = ["CATS", "PaintedDetector", "paint", "painted_detector", "save_painted_model"]


def painted_detector() -> PaintedDetector:
    """The exact painted-rectangle detector with 2 labels (0: red, 1: green)."""
    return build_painted(preset("tiny").model, 2)  # type: ignore[return-value]


def paint(size: tuple[int, int], rects: list[tuple[int, tuple[int, int, int, int]]]) -> np.ndarray:
    """A black ``ndarray[H, W, 3]`` uint8 RGB image with filled rectangles.

    Args:
        size: ``(width, height)``.
        rects: ``(label, (x1, y1, x2, y2))``; label 0 paints red, 1 green.
    """
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for label, (x1, y1, x2, y2) in rects:
        image[y1:y2, x1:x2, label] = 255
    return image
