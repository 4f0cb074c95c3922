"""A woven fabric at thread level, and the rendering of any rectangular region of it.

A :class:`Fabric` holds its yarn geometry and per-crossing state in *fabric coordinates*
(pixels, origin at the fabric's top-left corner, x across the width, y along the roll). Weave
defects edit that state before rendering; :func:`render_region` then turns any window of the
fabric into an image, so a long fabric (a roll) can be rendered frame by frame with yarns
continuing across frame boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fabricdet.data.synth.noise import smooth_curve, smooth_field
from fabricdet.data.synth.weave import (
    CELL_LEVELS,
    THICKNESS_LEVELS,
    WEAVE_PATTERNS,
    crossing_codes,
    shading_tables,
    tile_pattern,
)


@dataclass
class Fabric:
    """Thread-level state of a fabric (``J`` weft yarns, ``I`` warp yarns).

    Attributes:
        style: short description (weave and colouring), for humans.
        warp_edges (ndarray[I + 1] float64): x boundaries of the warp yarns, increasing.
        weft_edges (ndarray[J + 1] float64): y boundaries of the weft yarns, increasing.
        over (ndarray[J, I] bool): True where the warp lies on top of the weft.
        warp_shade, weft_shade (ndarray[J, I] float32): brightness factor of each yarn at
            each crossing (shade jitter along the yarn lives here).
        warp_thick, weft_thick (ndarray[J, I] uint8): thickness level (0..3) of each yarn at
            each crossing.
        gap (ndarray[J, I] bool): crossings where a yarn is missing.
        hole (ndarray[J, I] bool): crossings where both yarns are missing (torn).
        warp_rgb (ndarray[I, 3] float32), weft_rgb (ndarray[J, 3] float32): yarn colours, RGB
            in 0..1.
        hairiness: loose fibres per 100 px² of fabric.
    """

    style: str
    warp_edges: np.ndarray
    weft_edges: np.ndarray
    over: np.ndarray
    warp_shade: np.ndarray
    weft_shade: np.ndarray
    warp_thick: np.ndarray
    weft_thick: np.ndarray
    gap: np.ndarray
    hole: np.ndarray
    warp_rgb: np.ndarray
    weft_rgb: np.ndarray
    hairiness: float

    @property
    def num_warp(self) -> int:
        return len(self.warp_edges) - 1

    @property
    def num_weft(self) -> int:
        return len(self.weft_edges) - 1

    @property
    def pitch(self) -> tuple[float, float]:
        """Mean ``(warp, weft)`` yarn pitch in pixels."""
        return float(np.diff(self.warp_edges).mean()), float(np.diff(self.weft_edges).mean())

    def warp_at(self, x: float) -> int:
        """Index of the warp yarn covering fabric column ``x`` (clipped to the fabric)."""
        return int(np.clip(np.searchsorted(self.warp_edges, x, "right") - 1, 0, self.num_warp - 1))

    def weft_at(self, y: float) -> int:
        """Index of the weft yarn covering fabric row ``y`` (clipped to the fabric)."""
        return int(np.clip(np.searchsorted(self.weft_edges, y, "right") - 1, 0, self.num_weft - 1))


# Fabric colours, RGB 0..1. Tianchi fabrics are mostly grey, beige and white plain goods.
_PLAIN_COLOURS = np.array(
    [
        [0.78, 0.78, 0.78],
        [0.62, 0.63, 0.64],
        [0.86, 0.82, 0.72],
        [0.80, 0.72, 0.58],
        [0.92, 0.91, 0.88],
        [0.55, 0.60, 0.70],
        [0.70, 0.58, 0.60],
        [0.45, 0.50, 0.44],
    ],
    np.float32,
)
_PLAIN_WEIGHTS = np.array([0.25, 0.15, 0.18, 0.12, 0.12, 0.07, 0.06, 0.05])
_DYED_COLOURS = np.array(
    [
        [0.85, 0.85, 0.82],
        [0.20, 0.25, 0.45],
        [0.65, 0.15, 0.15],
        [0.25, 0.45, 0.30],
        [0.15, 0.15, 0.17],
        [0.85, 0.70, 0.30],
        [0.45, 0.60, 0.80],
    ],
    np.float32,
)


def _yarn_edges(rng: np.random.Generator, extent: float, pitch: float) -> np.ndarray:
    """Boundaries of yarns of mean ``pitch`` covering ``[0, extent)``; slow reed-density drift
    plus small per-yarn jitter."""
    n = int(np.ceil(extent / pitch * 1.15)) + 2
    widths = pitch * (1.0 + 0.05 * smooth_curve(rng, n, 25.0) + 0.05 * rng.standard_normal(n))
    edges = np.concatenate([[0.0], np.cumsum(np.clip(widths, 0.6 * pitch, None))])
    edges -= rng.uniform(0.0, pitch)  # the first yarn is cut by the fabric edge
    last = int(np.searchsorted(edges, extent)) + 1
    return edges[: last + 1].astype(np.float64)


def _stripes(rng: np.random.Generator, n: int, pitch: float) -> np.ndarray:
    """Colour index per yarn for a yarn-dyed stripe sequence (blocks of 4-40 yarns)."""
    palette = rng.choice(len(_DYED_COLOURS), size=rng.integers(2, 4), replace=False)
    out = np.empty(n, np.int64)
    pos = 0
    while pos < n:
        block = int(rng.integers(max(2, int(12 / pitch)), max(6, int(240 / pitch))))
        out[pos : pos + block] = rng.choice(palette)
        pos += block
    return out


def _jacquard_over(rng: np.random.Generator, n_weft: int, n_warp: int) -> np.ndarray:
    """A figured weave: a lattice of diamond motifs in one weave on a ground of another."""
    ground = WEAVE_PATTERNS[rng.choice(["satin_5", "twill_3_1"])]
    figure = WEAVE_PATTERNS[rng.choice(["sateen_5", "twill_1_2", "plain"])]
    period = rng.integers(14, 40, size=2)
    j, i = np.mgrid[0:n_weft, 0:n_warp]
    dj = np.abs((j % period[0]) - period[0] / 2) / (period[0] / 2)
    di = np.abs((i % period[1]) - period[1] / 2) / (period[1] / 2)
    motif = dj + di < rng.uniform(0.6, 1.0)
    return np.where(
        motif, tile_pattern(figure, n_weft, n_warp), tile_pattern(ground, n_weft, n_warp)
    )


def sample_fabric(
    rng: np.random.Generator,
    width: int,
    height: int,
    pitch_range: tuple[float, float],
    weave_weights: dict[str, float],
    patterned_fraction: float,
) -> Fabric:
    """Draw a random fabric covering ``width x height`` fabric pixels.

    Args:
        rng: random generator.
        width, height: fabric extent in pixels.
        pitch_range: ``(min, max)`` mean warp pitch in pixels.
        weave_weights: relative frequency of each plain-goods weave in :data:`WEAVE_PATTERNS`.
        patterned_fraction: probability of a yarn-dyed check/stripe or jacquard fabric.

    Returns:
        a fabric with no defects.
    """
    pitch = rng.uniform(*pitch_range)
    warp_edges = _yarn_edges(rng, width, pitch)
    weft_edges = _yarn_edges(rng, height, pitch * rng.uniform(0.8, 1.25))
    n_warp, n_weft = len(warp_edges) - 1, len(weft_edges) - 1
    shape = (n_weft, n_warp)

    patterned = rng.random() < patterned_fraction
    kind = rng.choice(["check", "stripe", "jacquard"]) if patterned else "plain"
    if kind == "jacquard":
        over = _jacquard_over(rng, n_weft, n_warp)
        pair = rng.choice(len(_DYED_COLOURS), size=2, replace=False)
        warp_rgb = np.repeat(_DYED_COLOURS[pair[0]][None], n_warp, axis=0)
        weft_rgb = np.repeat(_DYED_COLOURS[pair[1]][None], n_weft, axis=0)
        style = "jacquard"
    else:
        names = list(weave_weights)
        probs = np.array([weave_weights[n] for n in names], float)
        weave = str(rng.choice(names, p=probs / probs.sum()))
        over = tile_pattern(WEAVE_PATTERNS[weave], n_weft, n_warp)
        if kind == "plain":
            base = _PLAIN_COLOURS[rng.choice(len(_PLAIN_COLOURS), p=_PLAIN_WEIGHTS)]
            base = np.clip(base * rng.uniform(0.9, 1.08) + rng.normal(0, 0.015, 3), 0, 1)
            # Warp and weft are spun separately and rarely match exactly.
            tint = 1.0 + rng.normal(0, 0.03, 3)
            warp_rgb = np.repeat(base[None], n_warp, axis=0).astype(np.float32)
            weft_rgb = np.repeat((base * tint)[None], n_weft, axis=0).astype(np.float32)
        else:
            warp_rgb = _DYED_COLOURS[_stripes(rng, n_warp, pitch)]
            weft_rgb = (
                _DYED_COLOURS[_stripes(rng, n_weft, pitch)]
                if kind == "check"
                else np.repeat(warp_rgb[:1], n_weft, axis=0)
            )
        style = f"{weave} {kind}"

    # Shade jitter: per yarn, slowly along each yarn, and a faint fabric-wide mottling.
    mottle = 0.01 * smooth_field(rng, shape, (40.0, 40.0))
    warp_shade = (
        1.0
        + 0.04 * rng.standard_normal(n_warp, dtype=np.float32)[None, :]
        + 0.035 * smooth_field(rng, shape, (10.0, 1.0))
        + 0.02 * rng.standard_normal(shape, dtype=np.float32)
        + mottle
    )
    weft_shade = (
        1.0
        + 0.04 * rng.standard_normal(n_weft, dtype=np.float32)[:, None]
        + 0.035 * smooth_field(rng, shape, (1.0, 10.0))
        + 0.02 * rng.standard_normal(shape, dtype=np.float32)
        + mottle
    )
    # Thickness jitter (slubs): mostly level 2, drifting along each yarn.
    base_level = rng.uniform(1.6, 2.6)
    warp_thick = base_level + 0.5 * rng.standard_normal(n_warp)[None, :]
    warp_thick = warp_thick + 0.6 * smooth_field(rng, shape, (6.0, 1.0))
    weft_thick = base_level + 0.5 * rng.standard_normal(n_weft)[:, None]
    weft_thick = weft_thick + 0.6 * smooth_field(rng, shape, (1.0, 6.0))

    def level(t: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(t), 0, THICKNESS_LEVELS - 1).astype(np.uint8)

    return Fabric(
        style=style,
        warp_edges=warp_edges,
        weft_edges=weft_edges,
        over=over,
        warp_shade=warp_shade.astype(np.float32),
        weft_shade=weft_shade.astype(np.float32),
        warp_thick=level(warp_thick),
        weft_thick=level(weft_thick),
        gap=np.zeros(shape, bool),
        hole=np.zeros(shape, bool),
        warp_rgb=warp_rgb.astype(np.float32),
        weft_rgb=weft_rgb.astype(np.float32),
        hairiness=float(rng.uniform(0.05, 0.4)),
    )


def _axis_map(edges: np.ndarray, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Yarn index and quantised in-cell position of pixel centres ``start .. start+count-1``."""
    centres = np.arange(start, start + count, dtype=np.float64) + 0.5
    idx = np.clip(np.searchsorted(edges, centres, "right") - 1, 0, len(edges) - 2)
    pos = (centres - edges[idx]) / (edges[idx + 1] - edges[idx])
    level = np.clip((pos * CELL_LEVELS).astype(np.int32), 0, CELL_LEVELS - 1)
    return idx, level


def render_region(fabric: Fabric, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Render a window of the fabric, lit uniformly (no camera effects).

    Args:
        fabric: the fabric, with any weave edits applied.
        x0, y0: top-left corner of the window in fabric coordinates.
        width, height: window size in pixels.

    Returns:
        image (ndarray[height, width, 3] float32): linear RGB, about 0..1.
    """
    wi, uq = _axis_map(fabric.warp_edges, x0, width)
    wj, vq = _axis_map(fabric.weft_edges, y0, height)
    # Work on the crossings this window touches only.
    j_lo, j_hi, i_lo, i_hi = wj[0], wj[-1] + 1, wi[0], wi[-1] + 1
    sl = (slice(j_lo, j_hi), slice(i_lo, i_hi))
    over = fabric.over[sl]
    codes = crossing_codes(
        over, fabric.warp_thick[sl], fabric.weft_thick[sl], fabric.gap[sl], fabric.hole[sl]
    )
    shade = np.where(over, fabric.warp_shade[sl], fabric.weft_shade[sl])
    rows, cols = wj - j_lo, wi - i_lo

    bright_lut, visible_lut = shading_tables()
    # Per pixel: code * 256 + v * 16 + u, built from small row/column tables.
    cell = (vq * CELL_LEVELS)[:, None] + uq[None, :]
    index = np.take(codes[rows], cols, axis=1).astype(np.int32)
    index *= CELL_LEVELS * CELL_LEVELS
    index += cell
    bright = np.take(bright_lut, index)
    bright *= np.take(shade[rows], cols, axis=1)
    warp_visible = np.take(visible_lut, index)

    warp_rgb = fabric.warp_rgb[wi]  # [W, 3]
    weft_rgb = fabric.weft_rgb[wj]  # [H, 3]
    if np.ptp(warp_rgb, axis=0).max() == 0 and np.ptp(weft_rgb, axis=0).max() == 0:
        # Single-colour warp and weft: a blend with one scalar weight is cheaper than a where.
        diff = warp_rgb[0] - weft_rgb[0]
        image = warp_visible.astype(np.float32)[..., None] * diff + weft_rgb[0]
    else:
        image = np.where(warp_visible[..., None], warp_rgb[None, :, :], weft_rgb[:, None, :])
    image *= bright[..., None]
    return image.astype(np.float32, copy=False)


def add_hairiness(image: np.ndarray, rng: np.random.Generator, density: float) -> None:
    """Draw loose fibres (short bright curls) on the fabric, in place.

    Args:
        image (ndarray[H, W, 3] float32): fabric image, modified in place.
        rng: random generator.
        density: fibres per 100 px².
    """
    h, w = image.shape[:2]
    n = int(density * h * w / 100)
    if n == 0:
        return
    start = rng.uniform((0, 0), (w, h), size=(n, 2))
    angle = rng.uniform(0, np.pi, size=(n, 1))
    length = rng.uniform(3, 14, size=(n, 1))
    bend = rng.normal(0, 0.6, size=(n, 1))
    t = np.array([0.0, 0.5, 1.0])[None, :]
    ang = angle + bend * t
    pts = np.stack(
        [start[:, :1] + np.cos(ang) * length * t, start[:, 1:] + np.sin(ang) * length * t], axis=-1
    )
    layer = np.zeros((h, w), np.uint8)
    cv2.polylines(layer, list(np.rint(pts).astype(np.int32)), False, 255, 1, cv2.LINE_AA)
    # Fibres sit above the weave and catch the light: lift the pixels they cover.
    lift = layer.astype(np.float32)
    lift *= 0.15 / 255.0
    image += lift[..., None]
