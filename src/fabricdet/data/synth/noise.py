"""Smooth random fields: the source of every slow variation (yarn shade, thickness, light).

All fields are drawn on a coarse lattice and interpolated with OpenCV, which is what keeps
full-size rendering cheap: the random numbers drawn scale with the lattice, not the image.
"""

from __future__ import annotations

import cv2
import numpy as np


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], scale: tuple[float, float]
) -> np.ndarray:
    """Zero-mean, unit-ish-variance random field, smooth over ``scale`` samples.

    Args:
        rng: random generator.
        shape: ``(rows, cols)`` of the result.
        scale: ``(rows, cols)`` correlation length in samples; ``<= 1`` makes that axis
            independent (white) noise.

    Returns:
        field (ndarray[rows, cols] float32).
    """
    rows, cols = shape
    coarse_r = rows if scale[0] <= 1 else max(2, int(np.ceil(rows / scale[0])) + 1)
    coarse_c = cols if scale[1] <= 1 else max(2, int(np.ceil(cols / scale[1])) + 1)
    coarse = rng.standard_normal((coarse_r, coarse_c), dtype=np.float32)
    if (coarse_r, coarse_c) == (rows, cols):
        return coarse
    # Linear interpolation of a white lattice loses variance; cubic keeps it near one.
    return cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)


def smooth_curve(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """One-dimensional :func:`smooth_field`.

    Returns:
        curve (ndarray[n] float32).
    """
    return smooth_field(rng, (n, 1), (scale, 1.0))[:, 0]


def blob_mask(
    rng: np.random.Generator, height: int, width: int, roughness: float = 0.35
) -> np.ndarray:
    """An irregular filled blob touching (roughly) the ellipse inscribed in ``height x width``.

    Args:
        rng: random generator.
        height, width: size of the box holding the blob, in pixels (>= 1).
        roughness: relative amplitude of the edge irregularity.

    Returns:
        level (ndarray[height, width] float32): smooth level, ``> 0`` inside the blob.
    """
    yy = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    xx = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    radius = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    wobble = smooth_field(rng, (height, width), (max(height / 4, 1.5), max(width / 4, 1.5)))
    return (1.0 - radius) + roughness * wobble * 0.5
