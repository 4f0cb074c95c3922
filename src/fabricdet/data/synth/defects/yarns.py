"""Defects drawn as extra yarn material lying on the rendered fabric: thick yarns, stray
filaments, kinked wefts, knots and neps.

Strands are polylines drawn anti-aliased into a small window; the drawn coverage is the alpha
and the exact mask is ``alpha >= 0.5``. A blurred copy of the alpha shades each strand like a
round yarn (bright crest, darker flanks).
"""

from __future__ import annotations

import cv2
import numpy as np

from fabricdet.data.synth.defects.base import (
    Canvas,
    Placement,
    draw_strokes,
    sample_run,
    stroke_window,
)
from fabricdet.data.synth.masks import RegionMask
from fabricdet.data.synth.noise import blob_mask, smooth_curve, smooth_field

_EMPTY = RegionMask(0, 0, np.zeros((0, 0), bool))


def _strand_alpha(
    canvas: Canvas, paths: list[np.ndarray], width: float
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Window and coverage of strands along ``paths`` (each ``ndarray[N, 2]`` fabric xy), or
    None when they miss the canvas."""
    box = stroke_window(canvas, np.concatenate(paths), int(np.ceil(width)) + 3)
    return None if box is None else (box, draw_strokes(box, paths, width))


def _composite(
    canvas: Canvas,
    box: tuple[int, int, int, int],
    alpha: np.ndarray,
    rgb: np.ndarray,
    rng: np.random.Generator,
    crest_sigma: float,
    lit: float = 0.4,
    twist: float = 0.12,
    shadow: float = 0.25,
) -> RegionMask:
    """Paint yarn-coloured material of coverage ``alpha`` over the canvas window ``box``.

    The material is shaded like a round yarn (``lit``: crest-to-flank contrast), shows its
    twist as diagonal stripes (``twist``: their contrast) and, lying on top of the cloth,
    casts a soft shadow down and to the right (``shadow``: its depth).
    """
    crest = cv2.GaussianBlur(alpha, (0, 0), max(crest_sigma, 0.5))
    crest /= max(float(crest.max()), 1e-6)
    h, w = alpha.shape
    fibre = 1.0 + 0.08 * smooth_field(rng, (h, w), (1.5, 1.5))
    if twist > 0:
        period = max(2.5 * crest_sigma, 2.5)
        diag = np.add.outer(np.arange(h), np.arange(w)).astype(np.float32)
        fibre *= 1.0 + twist * np.sin(diag * (2 * np.pi / period) + rng.uniform(0, 6.3))
    colour = rgb[None, None, :] * ((1.0 - lit + lit * crest) * fibre)[..., None]
    view = canvas.view(*box)
    if shadow > 0:
        cast = cv2.GaussianBlur(alpha, (0, 0), 1.2)
        cast = np.roll(cast, (1, 1), axis=(0, 1))
        cast[:1] = 0
        cast[:, :1] = 0
        view *= (1.0 - shadow * cast)[..., None]
    view += alpha[..., None] * (colour - view)
    return RegionMask(box[0], box[1], alpha >= 0.5)


def _line_path(
    rng: np.random.Generator, start: np.ndarray, end: np.ndarray, wobble: float, step: float
) -> np.ndarray:
    """Points from ``start`` to ``end`` every ``step`` px, wandering sideways by ~``wobble``."""
    length = float(np.hypot(*(end - start)))
    n = max(int(length / step), 2)
    t = np.linspace(0.0, 1.0, n)[:, None]
    normal = np.array([-(end - start)[1], (end - start)[0]]) / max(length, 1e-6)
    side = wobble * smooth_curve(rng, n, max(n / 6, 2))[:, None]
    return start + t * (end - start) + side * normal


def _yarn_rgb(canvas: Canvas, x: float, y: float, warp: bool) -> np.ndarray:
    fab = canvas.fabric
    return fab.warp_rgb[fab.warp_at(x)] if warp else fab.weft_rgb[fab.weft_at(y)]


def _thick_yarn(canvas: Canvas, rng: np.random.Generator, place: Placement, warp: bool):
    fab = canvas.fabric
    pitch = fab.pitch[0] if warp else fab.pitch[1]
    b = place.bounds
    if warp:
        i = fab.warp_at(place.x)
        pos = 0.5 * (fab.warp_edges[i] + fab.warp_edges[i + 1])
        a0, a1 = sample_run(rng, place.y, b[1], b[3], 0.6, 80)
        start, end = np.array([pos, a0]), np.array([pos, a1])
    else:
        j = fab.weft_at(place.y)
        pos = 0.5 * (fab.weft_edges[j] + fab.weft_edges[j + 1])
        a0, a1 = sample_run(rng, place.x, b[0], b[2], 0.6, 120)
        start, end = np.array([a0, pos]), np.array([a1, pos])
    width = pitch * rng.uniform(1.5, 2.6)
    drawn = _strand_alpha(canvas, [_line_path(rng, start, end, 0.4, 12.0)], width)
    if drawn is None:
        return _EMPTY
    box, alpha = drawn
    # The thick yarn is still interlaced: where the crossing yarn lies on top it hides the
    # yarn's core, so only its bulging flanks show there.
    if warp:
        ys = np.arange(box[1], box[3]) + 0.5
        j_of = np.clip(np.searchsorted(fab.weft_edges, ys, "right") - 1, 0, fab.num_weft - 1)
        hidden = ~fab.over[j_of, i]
        core = (np.arange(box[0], box[2]) >= fab.warp_edges[i]) & (
            np.arange(box[0], box[2]) < fab.warp_edges[i + 1]
        )
        cover = np.where(hidden[:, None] & core[None, :], 0.35, 1.0).astype(np.float32)
    else:
        xs = np.arange(box[0], box[2]) + 0.5
        i_of = np.clip(np.searchsorted(fab.warp_edges, xs, "right") - 1, 0, fab.num_warp - 1)
        hidden = fab.over[j, i_of]
        core = (np.arange(box[1], box[3]) >= fab.weft_edges[j]) & (
            np.arange(box[1], box[3]) < fab.weft_edges[j + 1]
        )
        cover = np.where(core[:, None] & hidden[None, :], 0.35, 1.0).astype(np.float32)
    mask = alpha >= 0.5
    rgb = _yarn_rgb(canvas, place.x, place.y, warp) * rng.choice(
        [rng.uniform(0.72, 0.92), rng.uniform(1.05, 1.15)]
    )
    _composite(canvas, box, alpha * cover, rgb, rng, width / 3)
    return RegionMask(box[0], box[1], mask)


def thick_warp(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """粗经: a warp yarn 1.5-2.6 times as thick as its neighbours, often the whole length."""
    return _thick_yarn(canvas, rng, place, warp=True)


def thick_weft(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """粗维: a thick weft pick, often across the whole width."""
    return _thick_yarn(canvas, rng, place, warp=False)


def three_filament(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """三丝: a few stray filaments lying side by side on the surface, long and gently curved."""
    r = rng.random()
    angle = rng.normal(0, 0.08) if r < 0.5 else np.pi / 2 + rng.normal(0, 0.08)
    if r > 0.8:
        angle = rng.uniform(0, np.pi)
    longest = max(0.7 * (place.bounds[2] - place.bounds[0]), 60.0)
    length = float(np.exp(rng.uniform(np.log(50), np.log(longest))))
    direction = np.array([np.cos(angle), np.sin(angle)])
    centre = np.array([place.x, place.y])
    base = _line_path(
        rng,
        centre - direction * length / 2,
        centre + direction * length / 2,
        rng.uniform(1, 8),
        6.0,
    )
    normal = np.array([-direction[1], direction[0]])
    count = int(rng.choice([1, 2, 3, 3, 3]))
    paths = [base + normal * (k * rng.uniform(1.5, 3.0)) for k in range(count)]
    width = rng.uniform(1.0, 1.8)
    drawn = _strand_alpha(canvas, paths, width)
    if drawn is None:
        return _EMPTY
    rgb = _yarn_rgb(canvas, place.x, place.y, True)
    rgb = np.clip(rgb * 1.35 + 0.1, 0, 1.2) if rng.random() < 0.6 else rgb * 0.55
    return _composite(canvas, *drawn, rgb, rng, width / 2, lit=0.25, twist=0.0, shadow=0.15)


def weft_crimp(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """纬缩: a weft that snarled into small loops along a short horizontal stretch."""
    fab = canvas.fabric
    length = float(np.exp(rng.uniform(np.log(25), np.log(350))))
    n = max(int(length * 1.5), 8)
    t = np.linspace(0, length, n)
    radius = rng.uniform(2.0, 5.0)
    omega = 2 * np.pi / rng.uniform(5.0, 12.0)
    xs = place.x - length / 2 + t + radius * np.cos(omega * t)
    ys = place.y + radius * rng.uniform(0.6, 1.2) * np.sin(omega * t)
    ys += rng.uniform(0, 3) * smooth_curve(rng, n, n / 4)
    width = max(fab.pitch[1] * rng.uniform(0.3, 0.5), 1.2)
    drawn = _strand_alpha(canvas, [np.stack([xs, ys], axis=1)], width)
    if drawn is None:
        return _EMPTY
    rgb = _yarn_rgb(canvas, place.x, place.y, False) * rng.uniform(1.05, 1.25)
    return _composite(canvas, *drawn, rgb, rng, width / 3, twist=0.0)


def _lump(
    canvas: Canvas,
    rng: np.random.Generator,
    centre: np.ndarray,
    size: tuple[float, float],
    tails: list[np.ndarray],
    tail_width: float,
    rgb: np.ndarray,
) -> RegionMask:
    """A fuzzy lump of yarn (``size`` = width, height in px) with strand tails."""
    w, h = max(round(float(size[0])), 2), max(round(float(size[1])), 2)
    x0, y0 = round(float(centre[0] - w / 2)), round(float(centre[1] - h / 2))
    corners = np.array([[x0, y0], [x0 + w, y0 + h]], float)
    box = stroke_window(canvas, np.concatenate([corners, *tails]), 4)
    if box is None:
        return _EMPTY
    alpha = (
        draw_strokes(box, tails, tail_width)
        if tails
        else np.zeros((box[3] - box[1], box[2] - box[0]), np.float32)
    )
    blob = np.clip(blob_mask(rng, h, w, 0.45) * 6.0, 0.0, 1.0).astype(np.float32)
    bx0, by0 = max(x0, box[0]), max(y0, box[1])
    bx1, by1 = min(x0 + w, box[2]), min(y0 + h, box[3])
    if bx1 > bx0 and by1 > by0:
        win = alpha[by0 - box[1] : by1 - box[1], bx0 - box[0] : bx1 - box[0]]
        np.maximum(win, blob[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0], out=win)
    return _composite(canvas, box, alpha, rgb, rng, max(min(w, h) / 3, 0.7), lit=0.5)


def _lump_shade(rng: np.random.Generator) -> float:
    """Brightness of a knot relative to its yarn: packed fibres look darker, or catch the
    light and look paler."""
    return float(rng.uniform(0.5, 0.78) if rng.random() < 0.7 else rng.uniform(1.2, 1.4))


def _tails(rng: np.random.Generator, centre: np.ndarray, count: int, length: tuple, angle=None):
    out = []
    for _ in range(count):
        a = rng.uniform(0, 2 * np.pi) if angle is None else angle + rng.choice([0, np.pi])
        a += rng.normal(0, 0.3)
        end = centre + rng.uniform(*length) * np.array([np.cos(a), np.sin(a)])
        out.append(_line_path(rng, centre, end, 0.8, 2.0))
    return out


def knot(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """结头: a knot tying two yarn ends: a small dense lump with two short tails."""
    centre = np.array([place.x, place.y])
    size = (rng.uniform(7, 22), rng.uniform(6, 14))
    tails = _tails(rng, centre, int(rng.integers(1, 3)), (6, 22))
    rgb = _yarn_rgb(canvas, place.x, place.y, True) * _lump_shade(rng)
    return _lump(canvas, rng, centre, size, tails, rng.uniform(1.2, 2.2), rgb)


def warping_knot(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """整经结: a knot in a warp end made at warping: elongated along the warp, tails up/down."""
    pitch = canvas.fabric.pitch[0]
    centre = np.array([place.x, place.y])
    size = (pitch * rng.uniform(1.2, 2.2), rng.uniform(10, 36))
    tails = _tails(rng, centre, 2, (10, 30), angle=np.pi / 2)
    rgb = _yarn_rgb(canvas, place.x, place.y, True) * _lump_shade(rng)
    return _lump(canvas, rng, centre, size, tails, rng.uniform(1.2, 2.0), rgb)


def nep(canvas: Canvas, rng: np.random.Generator, place: Placement) -> RegionMask:
    """毛粒: a tiny ball of entangled fibres, usually paler than the yarn."""
    centre = np.array([place.x, place.y])
    d = rng.uniform(4, 11)
    tails = _tails(rng, centre, int(rng.integers(2, 6)), (d * 0.6, d * 1.3))
    rgb = _yarn_rgb(canvas, place.x, place.y, True)
    rgb = np.clip(rgb * 1.3 + 0.2, 0, 1.2) if rng.random() < 0.75 else rgb * 0.5
    return _lump(canvas, rng, centre, (d, d * rng.uniform(0.7, 1.3)), tails, 1.0, rgb)
