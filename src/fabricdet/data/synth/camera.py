"""The camera: fabric skew, lamp fall-off, optical blur, sensor noise, 8-bit quantisation, JPEG.

The fabric is rendered in its own coordinates on a slightly larger canvas; the camera maps it
to the image with a small rotation. Defect masks go through the same affine map (see
:func:`fabricdet.data.synth.masks.warp_mask`), so they stay exact.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from fabricdet.data.synth.config import SynthConfig
from fabricdet.data.synth.noise import smooth_curve, smooth_field


def fabric_padding(size: tuple[int, int], max_rotation_deg: float) -> tuple[int, int]:
    """Margin ``(px, py)`` to render around the visible fabric so that a rotation by up to
    ``max_rotation_deg`` never shows the canvas edge.

    Args:
        size: image ``(width, height)``.
    """
    w, h = size
    a = math.radians(max_rotation_deg)
    px = math.ceil((w * math.cos(a) + h * math.sin(a) - w) / 2) + 2
    py = math.ceil((h * math.cos(a) + w * math.sin(a) - h) / 2) + 2
    return px, py


def camera_matrix(
    angle_deg: float, fabric_size: tuple[int, int], image_size: tuple[int, int]
) -> np.ndarray:
    """Affine map from fabric canvas pixels to image pixels: rotate by ``angle_deg`` about the
    canvas centre and put that centre at the image centre.

    Returns:
        matrix (ndarray[2, 3] float64), OpenCV convention (integer coordinates are pixel
        centres), forward (fabric -> image).
    """
    cf = ((fabric_size[0] - 1) / 2, (fabric_size[1] - 1) / 2)
    ci = ((image_size[0] - 1) / 2, (image_size[1] - 1) / 2)
    matrix = cv2.getRotationMatrix2D(cf, angle_deg, 1.0)
    matrix[:, 2] += (ci[0] - cf[0], ci[1] - cf[1])
    return matrix


def _lighting(rng: np.random.Generator, size: tuple[int, int], strength: float) -> np.ndarray:
    """Multiplicative light field: lamp fall-off across the width, a faint per-column gain
    pattern of the line sensor, slow exposure drift down the roll, soft blotches.

    Returns:
        gain (ndarray[H, W] float32), about 1.
    """
    w, h = size
    x = (np.arange(w, dtype=np.float32) - rng.uniform(0.3, 0.7) * w) / w
    across = 1.0 - strength * rng.uniform(0.3, 1.0) * 4 * x * x
    across *= 1.0 + 0.004 * rng.standard_normal(w).astype(np.float32)  # sensor PRNU
    down = 1.0 + 0.02 * smooth_curve(rng, h, h / 3)
    blotches = 1.0 + 0.012 * smooth_field(rng, (max(h // 16, 2), max(w // 16, 2)), (10.0, 10.0))
    gain = cv2.resize(blotches, (w, h), interpolation=cv2.INTER_LINEAR)
    gain *= across[None, :]
    gain *= down[:, None]
    return gain


def capture(
    fabric_image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    config: SynthConfig,
) -> np.ndarray:
    """Photograph a rendered fabric canvas.

    Args:
        fabric_image (ndarray[Hf, Wf, 3] float32): linear RGB about 0..1.
        matrix (ndarray[2, 3] float64): fabric -> image map from :func:`camera_matrix`.
        size: image ``(width, height)``.
        rng: random generator.
        config: camera settings.

    Returns:
        image (ndarray[H, W, 3] uint8): RGB.
    """
    w, h = size
    image = cv2.warpAffine(
        fabric_image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    exposure = rng.uniform(0.85, 1.08)
    gain = _lighting(rng, size, config.illumination) * (exposure * 255.0)
    image *= gain[..., None]
    sigma = rng.uniform(*config.blur_sigma)
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    # Sensor noise: shot-like grain shared by the colour channels of a line camera.
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= rng.uniform(*config.noise_sigma)
    image += noise[..., None]
    return cv2.convertScaleAbs(image)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB image (ndarray[H, W, 3] uint8)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    return buf.tobytes()
