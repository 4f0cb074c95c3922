"""Defects of the fabric surface rather than its yarns: stains, size spots, abrasion marks,
creases, cloudy patches and shade bars.

Each one is a soft coverage ``alpha`` in 0..1 over a window of the canvas that scales or
replaces the fabric's colour; its exact mask is ``alpha >= 0.5`` (the half-strength contour a
person would trace).
"""

from __future__ import annotations

import cv2
import numpy as np

from fabricdet.data.synth.defects.base import (
    Canvas,
    Placement,
    draw_strokes,
    stroke_window,
)
from fabricdet.data.synth.masks import RegionMask
from fabricdet.data.synth.noise import smooth_curve, smooth_field

_EMPTY = RegionMask(0, 0, np.zeros((0, 0), bool))


def _ellipse(
    canvas: Canvas,
    rng: np.random.Generator,
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    roughness: float,
    softness: float,
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Soft irregular ellipse with semi-axes ``axes`` (px) rotated by ``angle`` (rad).

    Returns:
        window ``(x0, y0, x1, y1)``, alpha (ndarray[h, w] float32) and the coordinate along the
        major axis (ndarray[h, w] float32, px, for streaks), or None when off the canvas.
    """
    reach = max(axes) * (1 + roughness) + 2
    cx, cy = centre
    box = canvas.clip(int(cx - reach), int(cy - reach), int(cx + reach) + 1, int(cy + reach) + 1)
    if box is None:
        return None
    ys = np.arange(box[1], box[3], dtype=np.float32)[:, None] + 0.5 - cy
    xs = np.arange(box[0], box[2], dtype=np.float32)[None, :] + 0.5 - cx
    along = xs * np.cos(angle) + ys * np.sin(angle)
    across = -xs * np.sin(angle) + ys * np.cos(angle)
    radius = np.sqrt((along / axes[0]) ** 2 + (across / axes[1]) ** 2)
    h, w = box[3] - box[1], box[2] - box[0]
    wobble = smooth_field(rng, (h, w), (max(min(axes) / 1.5, 2.0), max(min(axes) / 1.5, 2.0)))
    level = 1.0 - radius + roughness * 0.5 * wobble
    alpha = np.clip(level / softness, 0.0, 1.0).astype(np.float32)
    return box, alpha, across.astype(np.float32)


def _scale(canvas: Canvas, box, alpha: np.ndarray, factor: np.ndarray) -> RegionMask:
    """Multiply the canvas window by ``1 + alpha * (factor - 1)`` (factor: [h, w, 3] or [3])."""
    view = canvas.view(*box)
    view *= 1.0 + alpha[..., None] * (factor - 1.0)
    return RegionMask(box[0], box[1], alpha >= 0.5)


_STAIN_TINTS = {
    "dirt": np.array([0.62, 0.6, 0.56], np.float32),
    "oil": np.array([0.78, 0.68, 0.48], np.float32),
    "water": np.array([0.9, 0.9, 0.92], np.float32),
}


def stain(canvas: Canvas, rng: np.random.Generator, place: Placement, kind: str) -> RegionMask:
    """水渍 / 油渍 / 污渍: a soft-edged translucent blob that tints the fabric; water marks
    are faint with a darker tide line at their edge."""
    a = float(np.exp(rng.uniform(np.log(5), np.log(140))))
    axes = (a, a * rng.uniform(0.4, 1.0))
    soft = rng.uniform(0.15, 0.5)
    shape = _ellipse(canvas, rng, (place.x, place.y), axes, rng.uniform(0, np.pi), 0.5, soft)
    if shape is None:
        return _EMPTY
    box, alpha, _ = shape
    tint = _STAIN_TINTS[kind] * rng.uniform(0.75, 1.05) + rng.normal(0, 0.03, 3)
    factor = np.broadcast_to(np.clip(tint, 0.2, 1.0).astype(np.float32), (*alpha.shape, 3))
    if kind == "water":
        rim = (4.0 * alpha * (1.0 - alpha))[..., None]
        factor = factor - 0.15 * rim
    return _scale(canvas, box, alpha, factor)


def size_spot(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """浆斑: a dried lump of sizing agent: glossy, paler, and it hides the weave texture."""
    a = float(np.exp(rng.uniform(np.log(4), np.log(45))))
    axes = (a, a * rng.uniform(0.5, 1.0))
    shape = _ellipse(canvas, rng, (place.x, place.y), axes, rng.uniform(0, np.pi), 0.4, 0.3)
    if shape is None:
        return _EMPTY
    box, alpha, _ = shape
    view = canvas.view(*box)
    glossy = cv2.GaussianBlur(view, (0, 0), rng.uniform(1.5, 3.0)) * rng.uniform(1.05, 1.25)
    view += alpha[..., None] * (glossy - view)
    return RegionMask(box[0], box[1], alpha >= 0.5)


_ABRASION = {  # raw name -> (brightness, tint, streak amplitude, smoothing sigma)
    "磨痕": (1.15, (1.0, 1.0, 1.0), 0.10, 1.5),
    "轧痕": (0.8, (1.0, 1.0, 1.0), 0.05, 1.0),
    "修痕": (0.88, (1.0, 0.98, 0.95), 0.12, 0.0),
    "烧毛痕": (0.78, (1.0, 0.85, 0.65), 0.08, 0.8),
}


def abrasion(canvas: Canvas, rng: np.random.Generator, place: Placement, kind: str) -> RegionMask:
    """磨痕 / 轧痕 / 修痕 / 烧毛痕: an elongated mark rubbed, pressed, mended or singed into
    the surface, streaked along its length."""
    bright, tint, streak_amp, sigma = _ABRASION[kind]
    length = float(np.exp(rng.uniform(np.log(20), np.log(250))))
    axes = (length, max(length * rng.uniform(0.05, 0.3), 3.0))
    angle = rng.uniform(0, np.pi) if kind in ("磨痕", "修痕") else rng.choice([0, np.pi / 2])
    shape = _ellipse(canvas, rng, (place.x, place.y), axes, angle + rng.normal(0, 0.05), 0.4, 0.35)
    if shape is None:
        return _EMPTY
    box, alpha, across = shape
    streak = 1.0 + streak_amp * np.sin(across * (2 * np.pi / rng.uniform(2.0, 5.0)))
    factor = (bright * streak)[..., None] * np.array(tint, np.float32)
    if sigma > 0:  # rubbing and singeing flatten the fibres: less texture
        view = canvas.view(*box)
        flat = cv2.GaussianBlur(view, (0, 0), sigma)
        view += alpha[..., None] * (flat - view)
    return _scale(canvas, box, alpha, factor.astype(np.float32))


def crease(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """死皱: a pressed-in fold: a long bent ridge, lit on one side and shadowed on the other."""
    length = float(np.exp(rng.uniform(np.log(80), np.log(900))))
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    n = max(int(length / 8), 4)
    t = np.linspace(-length / 2, length / 2, n)[:, None]
    bend = rng.uniform(2, 25) * smooth_curve(rng, n, n / 3)[:, None]
    spine = np.array([place.x, place.y]) + t * direction + bend * normal
    width = rng.uniform(2.0, 6.0)
    offset = normal * width * 0.6
    box = stroke_window(canvas, spine, int(2 * width) + 4)
    if box is None:
        return _EMPTY
    lit = cv2.GaussianBlur(draw_strokes(box, [spine + offset], width), (0, 0), width / 3)
    dark = cv2.GaussianBlur(draw_strokes(box, [spine - offset], width), (0, 0), width / 3)
    factor = (1.0 + rng.uniform(0.15, 0.35) * lit - rng.uniform(0.25, 0.45) * dark)[..., None]
    view = canvas.view(*box)
    view *= factor
    return RegionMask(box[0], box[1], (lit >= 0.5) | (dark >= 0.5))


def cloudy(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """云织: uneven weft density in a patch, seen as cloud-like light and dark mottling."""
    a = float(np.exp(rng.uniform(np.log(40), np.log(220))))
    axes = (a, a * rng.uniform(0.5, 1.0))
    shape = _ellipse(canvas, rng, (place.x, place.y), axes, rng.uniform(0, np.pi), 0.5, 0.4)
    if shape is None:
        return _EMPTY
    box, alpha, _ = shape
    scale = rng.uniform(6, 20)
    mottle = 1.0 + rng.uniform(0.1, 0.2) * smooth_field(rng, alpha.shape, (scale, scale * 1.5))
    return _scale(canvas, box, alpha, (mottle * rng.uniform(0.85, 0.97))[..., None])


def _band(canvas: Canvas, place: Placement, centre: np.ndarray, half: float, soft: float):
    """Alpha of a full-width horizontal band whose centre line is ``centre`` (ndarray[W])."""
    x0, x1 = canvas.x0, canvas.x0 + canvas.image.shape[1]
    reach = float(np.abs(centre - place.y).max()) + half + 2 * soft + 2
    box = canvas.clip(x0, int(place.y - reach), x1, int(place.y + reach) + 1)
    if box is None:
        return None
    ys = np.arange(box[1], box[3], dtype=np.float32)[:, None] + 0.5
    dist = np.abs(ys - centre[None, :])
    return box, np.clip((half - dist) / soft + 0.5, 0.0, 1.0).astype(np.float32)


def wavy_bar(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """浪纹档: a full-width band whose shade and edges ripple in waves."""
    w = canvas.image.shape[1]
    xs = np.arange(canvas.x0, canvas.x0 + w, dtype=np.float32)
    wavelength, phase = rng.uniform(60, 500), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * xs / wavelength + phase)
    centre = place.y + rng.uniform(2, 14) * wave
    drawn = _band(canvas, place, centre, rng.uniform(3, 30), rng.uniform(1.0, 4.0))
    if drawn is None:
        return _EMPTY
    box, alpha = drawn
    depth = rng.choice([rng.uniform(0.8, 0.92), rng.uniform(1.06, 1.15)])
    factor = (1.0 + (depth - 1.0) * (0.75 + 0.25 * wave))[None, :, None]
    return _scale(canvas, box, alpha, np.broadcast_to(factor, (*alpha.shape, 3)))


def shade_bar(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """色差档: a full-width band woven from a weft lot of a slightly different colour."""
    w = canvas.image.shape[1]
    y = place.y + rng.uniform(0, 1.5) * smooth_curve(rng, w, w / 4)
    drawn = _band(canvas, place, y, rng.uniform(5, 80), rng.uniform(1.0, 6.0))
    if drawn is None:
        return _EMPTY
    box, alpha = drawn
    tint = rng.choice([0.88, 1.08]) * (1.0 + rng.normal(0, 0.05, 3))
    return _scale(canvas, box, alpha, tint.astype(np.float32))
