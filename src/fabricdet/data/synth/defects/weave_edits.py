"""Defects made by editing the weave: which yarn lies on top, yarn shade and thickness, gaps.

Each painter edits ``fabric`` in place before it is rendered and returns the exact mask of the
crossing cells it changed (see :func:`~fabricdet.data.synth.masks.cells_to_mask`). Warp yarns
are columns, weft yarns rows.
"""

from __future__ import annotations

import numpy as np

from fabricdet.data.synth.defects.base import Placement, sample_run
from fabricdet.data.synth.fabric import Fabric
from fabricdet.data.synth.masks import RegionMask, cells_to_mask
from fabricdet.data.synth.noise import blob_mask
from fabricdet.data.synth.weave import THICKNESS_LEVELS


def _weft_run(fabric: Fabric, rng: np.random.Generator, place: Placement, full: float, min_len):
    """Weft indices ``[j0, j1)`` of a vertical run through the anchor."""
    y0, y1 = sample_run(rng, place.y, place.bounds[1], place.bounds[3], full, min_len)
    return fabric.weft_at(y0), fabric.weft_at(y1) + 1


def _warp_run(fabric: Fabric, rng: np.random.Generator, place: Placement, full: float, min_len):
    """Warp indices ``[i0, i1)`` of a horizontal run through the anchor."""
    x0, x1 = sample_run(rng, place.x, place.bounds[0], place.bounds[2], full, min_len)
    return fabric.warp_at(x0), fabric.warp_at(x1) + 1


def _thicker(levels: np.ndarray, step: int) -> np.ndarray:
    return np.clip(levels.astype(np.int16) + step, 0, THICKNESS_LEVELS - 1).astype(np.uint8)


def _column(fabric: Fabric, j0: int, j1: int, i: int, width: int = 1) -> RegionMask:
    return cells_to_mask(fabric, j0, i, np.ones((j1 - j0, width), bool))


def _row(fabric: Fabric, j: int, i0: int, i1: int, height: int = 1) -> RegionMask:
    return cells_to_mask(fabric, j, i0, np.ones((height, i1 - i0), bool))


def broken_warp(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """断经: a warp yarn missing over a long vertical run; the wefts float over the gap and the
    background shows between them (a dark dashed line)."""
    i = fabric.warp_at(place.x)
    j0, j1 = _weft_run(fabric, rng, place, 0.6, 80)
    fabric.over[j0:j1, i] = False
    fabric.gap[j0:j1, i] = True
    fabric.weft_shade[j0:j1, i] *= rng.uniform(0.8, 0.95)
    return _column(fabric, j0, j1, i)


def loose_warp(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """松经: a slack warp that floats on the surface, puffed up and catching more light."""
    i = fabric.warp_at(place.x)
    j0, j1 = _weft_run(fabric, rng, place, 0.4, 60)
    # Slack yarn is still bound now and then.
    fabric.over[j0:j1, i] = rng.random(j1 - j0) > 0.12
    fabric.warp_shade[j0:j1, i] *= rng.uniform(1.08, 1.2)
    fabric.warp_thick[j0:j1, i] = _thicker(fabric.warp_thick[j0:j1, i], 1)
    return _column(fabric, j0, j1, i)


def hanging_warp(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """吊经: an over-tight warp sinks below the wefts; the column looks thin and shadowed."""
    i = fabric.warp_at(place.x)
    j0, j1 = _weft_run(fabric, rng, place, 0.4, 60)
    fabric.over[j0:j1, i] = False
    fabric.weft_shade[j0:j1, i] *= rng.uniform(0.7, 0.85)
    fabric.weft_thick[j0:j1, i] = 0
    return _column(fabric, j0, j1, i)


def double_warp(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """双经: two warps drawn through the same heddle, interlacing as one thick yarn."""
    i = min(fabric.warp_at(place.x), fabric.num_warp - 2)
    j0, j1 = _weft_run(fabric, rng, place, 0.6, 100)
    fabric.over[j0:j1, i + 1] = fabric.over[j0:j1, i]
    for k in (i, i + 1):
        fabric.warp_thick[j0:j1, k] = THICKNESS_LEVELS - 1
        fabric.warp_shade[j0:j1, k] *= rng.uniform(0.85, 0.95)
    return _column(fabric, j0, j1, i, 2)


def reed_mark(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """筘路: a damaged reed dent leaves a streak of thin, sparse warps along the whole roll."""
    i = min(fabric.warp_at(place.x), fabric.num_warp - 2)
    j0, j1 = _weft_run(fabric, rng, place, 0.85, 200)
    fabric.warp_thick[j0:j1, i : i + 2] = 0
    fabric.weft_thick[j0:j1, i : i + 2] = 0
    fabric.warp_shade[j0:j1, i : i + 2] *= rng.uniform(0.8, 0.92)
    return _column(fabric, j0, j1, i, 2)


def double_weft(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """双纬: two picks in the same shed: a pair of wefts with identical interlacing."""
    j = min(fabric.weft_at(place.y), fabric.num_weft - 2)
    i0, i1 = _warp_run(fabric, rng, place, 0.7, 150)
    fabric.over[j + 1, i0:i1] = fabric.over[j, i0:i1]
    fabric.weft_thick[j : j + 2, i0:i1] = THICKNESS_LEVELS - 1
    fabric.weft_shade[j : j + 2, i0:i1] *= rng.uniform(0.82, 0.94)
    return _row(fabric, j, i0, i1, 2)


def bad_weft(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """纬纱不良: one weft of a different lot: a horizontal line of another shade and count."""
    j = fabric.weft_at(place.y)
    i0, i1 = _warp_run(fabric, rng, place, 0.7, 150)
    fabric.weft_shade[j, i0:i1] *= rng.choice([rng.uniform(0.72, 0.85), rng.uniform(1.12, 1.25)])
    fabric.weft_thick[j, i0:i1] = rng.integers(0, THICKNESS_LEVELS)
    return _row(fabric, j, i0, i1)


def _float(fabric: Fabric, rng: np.random.Generator, j: int, i: int, length: int) -> np.ndarray:
    """One yarn floating over ``length`` crossings from ``(j, i)``; returns the cell box
    ``(j0, i0, j1, i1)``. Warp floats on weft-faced fabric, weft floats on warp-faced, so that
    the float is visible against the face."""
    warp_face = fabric.over.mean()
    warp_float = rng.random() < 0.5 if abs(warp_face - 0.5) < 0.05 else warp_face < 0.5
    if warp_float:
        j1 = min(j + length, fabric.num_weft)
        fabric.over[j:j1, i] = True
        fabric.warp_shade[j:j1, i] *= rng.uniform(1.05, 1.2)
        return np.array([j, i, j1, i + 1])
    i1 = min(i + length, fabric.num_warp)
    fabric.over[j, i:i1] = False
    fabric.weft_shade[j, i:i1] *= rng.uniform(1.05, 1.2)
    return np.array([j, i, j + 1, i1])


def _cells_of_boxes(fabric: Fabric, boxes: list[np.ndarray]) -> RegionMask:
    stacked = np.stack(boxes)
    j0, i0 = stacked[:, :2].min(axis=0)
    j1, i1 = stacked[:, 2:].max(axis=0)
    cells = np.zeros((j1 - j0, i1 - i0), bool)
    for bj0, bi0, bj1, bi1 in stacked:
        cells[bj0 - j0 : bj1 - j0, bi0 - i0 : bi1 - i0] = True
    return cells_to_mask(fabric, int(j0), int(i0), cells)


def star_float(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """星跳: a single yarn skipping 4-9 crossings."""
    j, i = fabric.weft_at(place.y), fabric.warp_at(place.x)
    return _cells_of_boxes(fabric, [_float(fabric, rng, j, i, int(rng.integers(4, 10)))])


def long_float(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """跳纱: a yarn skipping a long stretch (10-40 crossings)."""
    j, i = fabric.weft_at(place.y), fabric.warp_at(place.x)
    return _cells_of_boxes(fabric, [_float(fabric, rng, j, i, int(rng.integers(10, 41)))])


def flower_float(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """跳花: a cluster of 2-5 neighbouring, staggered floats."""
    j, i = fabric.weft_at(place.y), fabric.warp_at(place.x)
    boxes = []
    for k in range(int(rng.integers(2, 6))):
        jj = int(np.clip(j + rng.integers(-2, 3) + (k if rng.random() < 0.5 else 0), 0, None))
        ii = int(np.clip(i + k + rng.integers(0, 2), 0, fabric.num_warp - 1))
        jj = min(jj, fabric.num_weft - 1)
        boxes.append(_float(fabric, rng, jj, ii, int(rng.integers(4, 9))))
    return _cells_of_boxes(fabric, boxes)


def centipede(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """百脚: a weft-wise band where wefts float and short warp floats stick out at regular
    intervals, like the legs of a centipede."""
    j = int(np.clip(fabric.weft_at(place.y), 1, fabric.num_weft - 4))
    rows = int(rng.integers(1, 3))
    i0, i1 = _warp_run(fabric, rng, place, 0.3, 60)
    step = int(rng.integers(3, 6))
    band = slice(j, j + rows)
    fabric.over[band, i0:i1] = False
    fabric.weft_shade[band, i0:i1] *= rng.uniform(0.85, 0.95)
    legs = np.arange(i0 + int(rng.integers(0, step)), i1, step)
    fabric.over[j - 1 : j + rows + 1, legs] = True
    fabric.warp_shade[j - 1 : j + rows + 1, legs] *= rng.uniform(1.05, 1.2)
    return _row(fabric, j - 1, i0, i1, rows + 2)


def broken_spandex(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """断氨纶: a broken elastane pick lets the fabric pucker along a weft: a crinkled line."""
    j = min(fabric.weft_at(place.y), fabric.num_weft - 2)
    rows = int(rng.integers(1, 3))
    i0, i1 = _warp_run(fabric, rng, place, 0.6, 150)
    n = i1 - i0
    period = rng.uniform(3, 9)
    crinkle = 1.0 + 0.25 * np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 6.3))
    fabric.over[j : j + rows, i0:i1] = rng.random((rows, n)) < 0.15
    fabric.weft_shade[j : j + rows, i0:i1] *= (crinkle * rng.uniform(0.7, 0.85)).astype(np.float32)
    fabric.gap[j : j + rows, i0:i1] = rng.random((rows, n)) < 0.3  # puckers open the weave
    fabric.weft_thick[j : j + rows, i0:i1] = THICKNESS_LEVELS - 1
    return _row(fabric, j, i0, i1, rows)


def pattern_skip(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """花板跳: a patch where the shedding went wrong: long floats bound at random points."""
    nj, ni = (int(v) for v in rng.integers(5, 26, size=2))
    j0 = int(np.clip(fabric.weft_at(place.y) - nj // 2, 0, max(fabric.num_weft - nj, 0)))
    i0 = int(np.clip(fabric.warp_at(place.x) - ni // 2, 0, max(fabric.num_warp - ni, 0)))
    nj, ni = min(nj, fabric.num_weft - j0), min(ni, fabric.num_warp - i0)
    cells = blob_mask(rng, nj, ni, 0.5) > 0
    cells[nj // 2, ni // 2] = True
    period = int(rng.integers(5, 11))
    jj, ii = np.mgrid[0:nj, 0:ni]
    if fabric.over.mean() <= 0.5:  # warp floats stand out on a weft-faced fabric
        wrong = (jj + rng.integers(0, period, size=(1, ni))) % period != 0
    else:
        wrong = (ii + rng.integers(0, period, size=(nj, 1))) % period == 0
    sl = (slice(j0, j0 + nj), slice(i0, i0 + ni))
    fabric.over[sl] = np.where(cells, wrong, fabric.over[sl])
    fabric.warp_shade[sl] *= np.where(cells, rng.uniform(1.0, 1.12), 1.0).astype(np.float32)
    return cells_to_mask(fabric, j0, i0, cells)


def density_bar(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """稀密档: a band across the full width where the picks are sparser (thin, dark) or
    denser (thick, light) than the rest."""
    rows = int(rng.integers(3, 30))
    j0 = int(np.clip(fabric.weft_at(place.y) - rows // 2, 0, max(fabric.num_weft - rows, 0)))
    band = slice(j0, j0 + rows)
    sparse = rng.random() < 0.6
    fabric.weft_thick[band] = 0 if sparse else THICKNESS_LEVELS - 1
    fabric.weft_shade[band] *= rng.uniform(0.78, 0.9) if sparse else rng.uniform(1.04, 1.12)
    fabric.warp_shade[band] *= rng.uniform(0.85, 0.95) if sparse else 1.0
    return _row(fabric, j0, 0, fabric.num_warp, min(rows, fabric.num_weft - j0))


def hole(fabric: Fabric, rng: np.random.Generator, place: Placement) -> RegionMask:
    """破洞: a torn hole. The tear follows the yarns, so its edge is stepped; at the edge some
    cells keep one of their two yarns (frayed ends), inside the backing shows through."""
    pitch = fabric.pitch
    w_px = float(np.exp(rng.uniform(np.log(6), np.log(90))))
    h_px = float(np.clip(w_px * np.exp(rng.normal(0, 0.4)), 5, 120))
    ni, nj = max(round(w_px / pitch[0]), 1), max(round(h_px / pitch[1]), 1)
    j0 = int(np.clip(fabric.weft_at(place.y) - nj // 2, 0, max(fabric.num_weft - nj, 0)))
    i0 = int(np.clip(fabric.warp_at(place.x) - ni // 2, 0, max(fabric.num_warp - ni, 0)))
    nj, ni = min(nj, fabric.num_weft - j0), min(ni, fabric.num_warp - i0)
    level = blob_mask(rng, nj, ni, 0.6)
    cells = level > 0
    cells[nj // 2, ni // 2] = True
    # Cells near the edge: one yarn survives (frayed), chosen per cell.
    frayed = cells & (level < 0.25) & (rng.random((nj, ni)) < 0.6)
    sl = (slice(j0, j0 + nj), slice(i0, i0 + ni))
    fabric.hole[sl] |= cells & ~frayed
    fabric.gap[sl] |= frayed
    fabric.over[sl] = np.where(frayed, rng.random((nj, ni)) < 0.5, fabric.over[sl])
    return cells_to_mask(fabric, j0, i0, cells)
