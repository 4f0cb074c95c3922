"""Painted test images for the tiling and roll tests, and the painted detector that finds
them (``tests/serve/serve_models.py``, reused: colour channel = label, connected components =
boxes and masks, so on a tile it reports the painted shapes clipped to the tile).

Besides rectangles (:func:`paint`), curves (:func:`with_curve`, a wavy thread) and discs
(:func:`with_disc`, a blob) test measurement from masks; :func:`drop_masks` turns the
detector into a box-only one."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

from serve_models import (
    CATS,
    PaintedDetector,
    build_painted,
    save_painted_model,
)

from fabricdet.engine import preset

__all__ = [
    "CATS",
    "PaintedDetector",
    "drop_masks",
    "paint",
    "painted_detector",
    "save_painted_model",
    "wave",
    "with_curve",
    "with_disc",
    "write_frames",
]


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


def wave(x: float, y0: int, y1: int, amplitude: float, period: float) -> np.ndarray:
    """Points ``(x, y)`` of a thread running down rows ``y0..y1`` and waving across:
    ``ndarray[P, 2]`` float, one per row, ``x + amplitude * sin(2 pi y / period)``."""
    y = np.arange(y0, y1 + 1, dtype=np.float64)
    return np.stack([x + amplitude * np.sin(2 * np.pi * y / period), y], 1)


def with_curve(image: np.ndarray, label: int, points: np.ndarray, thickness: int) -> np.ndarray:
    """A copy of ``image`` with the polyline ``points`` (ndarray[P, 2], x y) painted in the
    label's colour, ``thickness`` pixels wide."""
    out = image.copy()
    channel = np.ascontiguousarray(out[:, :, label])
    pts = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(channel, [pts], False, 255, thickness, lineType=cv2.LINE_8)
    out[:, :, label] = channel
    return out


def with_disc(image: np.ndarray, label: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    """A copy of ``image`` with a filled disc painted in the label's colour."""
    out = image.copy()
    channel = np.ascontiguousarray(out[:, :, label])
    cv2.circle(channel, centre, radius, 255, -1, lineType=cv2.LINE_8)
    out[:, :, label] = channel
    return out


def drop_masks(model: PaintedDetector) -> PaintedDetector:
    """``model``, answering without ``masks`` from now on (a detector without a mask head)."""
    forward = model.forward

    def boxes_only(images, targets=None):  # type: ignore[no-untyped-def]
        return [{k: v for k, v in out.items() if k != "masks"} for out in forward(images)]

    model.forward = boxes_only  # type: ignore[method-assign]
    return model


def write_frames(folder: Path, strip: np.ndarray, frame_height: int) -> Path:
    """Cut ``strip`` (ndarray[H, W, 3] RGB) into abutting PNG frames ``f000.png``, ... of
    ``frame_height`` rows in a new ``folder``; returns it."""
    folder.mkdir(parents=True)
    for k, y in enumerate(range(0, len(strip), frame_height)):
        cv2.imwrite(str(folder / f"f{k:03d}.png"), strip[y : y + frame_height, :, ::-1])
    return folder
