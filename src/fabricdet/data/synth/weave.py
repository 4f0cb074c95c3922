"""Weave patterns and the per-crossing yarn shading lookup table.

A woven fabric is two sets of yarns: warp yarns run vertically (image columns, along the roll),
weft yarns horizontally (image rows). At every crossing ``(j, i)`` of weft ``j`` and warp ``i``
one of the two lies on top. A weave is the periodic boolean pattern of those crossings.

Pixels are never rendered one by one: every pixel is classified by a small integer *crossing
code* (which yarn is on top, whether it also lies on top at the neighbouring crossings along its
own direction, its thickness level, whether the crossing has a missing yarn) and by its
quantised position ``(v, u)`` inside the crossing cell. A precomputed table maps
``(code, v, u)`` to a brightness and to "is the warp visible here", so rendering is two gathers.
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: Quantisation of the position inside a crossing cell (yarn pitches are 4-10 px, so 16 levels
#: are finer than a pixel).
CELL_LEVELS = 16
#: Number of yarn thickness levels; level ``k`` covers ``THICKNESS_FRACTIONS[k]`` of the pitch.
THICKNESS_LEVELS = 4
THICKNESS_FRACTIONS = (0.62, 0.76, 0.88, 0.98)
#: Brightness of the bare background seen through a crossing whose yarn is missing.
GAP_LEVEL = 0.10

# Crossing-code bits.
BIT_WARP_ON_TOP = 1
BIT_PREV_ON_TOP = 2  # the top yarn is also on top at the previous crossing along its direction
BIT_NEXT_ON_TOP = 4
THICK_SHIFT = 3  # two bits: thickness level of the top yarn
BIT_GAP = 32  # a yarn is missing here: background shows in the interstices
BIT_HOLE = 64  # both yarns are missing (a torn hole): only background shows
NUM_CODES = 128


def _twill(over: int, under: int) -> np.ndarray:
    period = over + under
    j, i = np.mgrid[0:period, 0:period]
    return (i + j) % period < over


def _satin(ends: int, move: int) -> np.ndarray:
    j, i = np.mgrid[0:ends, 0:ends]
    # Warp-faced satin: each warp goes under exactly one weft per repeat, the binding points
    # spread by the move number so that no twill line forms.
    return i != (move * j) % ends


#: Weave repeats, ``bool[repeat_weft, repeat_warp]``, True where the warp lies over the weft.
WEAVE_PATTERNS: dict[str, np.ndarray] = {
    "plain": np.array([[True, False], [False, True]]),
    "twill_2_1": _twill(2, 1),
    "twill_1_2": _twill(1, 2),
    "twill_3_1": _twill(3, 1),
    "twill_2_2": _twill(2, 2),
    "satin_5": _satin(5, 2),
    "sateen_5": ~_satin(5, 2),
    "basket_2_2": np.kron(np.array([[True, False], [False, True]]), np.ones((2, 2), bool)),
}


def tile_pattern(pattern: np.ndarray, n_weft: int, n_warp: int) -> np.ndarray:
    """Repeat a weave pattern over a fabric.

    Args:
        pattern (ndarray[Ry, Rx] bool): one repeat, True where the warp is on top.
        n_weft, n_warp: number of weft and warp yarns.

    Returns:
        over (ndarray[n_weft, n_warp] bool): True where the warp is on top.
    """
    ry, rx = pattern.shape
    reps = (-(-n_weft // ry), -(-n_warp // rx))
    return np.tile(pattern, reps)[:n_weft, :n_warp].copy()


def crossing_codes(
    over: np.ndarray,
    warp_thick: np.ndarray,
    weft_thick: np.ndarray,
    gap: np.ndarray,
    hole: np.ndarray,
) -> np.ndarray:
    """Crossing codes of a fabric (see the module docstring).

    Args:
        over (ndarray[J, I] bool): True where the warp is on top.
        warp_thick, weft_thick (ndarray[J, I] uint8): thickness level of each yarn at each
            crossing, in ``0..THICKNESS_LEVELS-1``.
        gap (ndarray[J, I] bool): crossings where a yarn is missing.
        hole (ndarray[J, I] bool): crossings where both yarns are missing.

    Returns:
        codes (ndarray[J, I] uint8): values in ``0..NUM_CODES-1``.
    """
    # Neighbours along the warp (vertical) and along the weft (horizontal); the fabric border
    # counts as "same as here" so that edges do not get spurious dips.
    up = np.vstack([over[:1], over[:-1]])
    down = np.vstack([over[1:], over[-1:]])
    left = np.hstack([over[:, :1], over[:, :-1]])
    right = np.hstack([over[:, 1:], over[:, -1:]])
    prev_on_top = np.where(over, up, ~left)
    next_on_top = np.where(over, down, ~right)
    thick = np.where(over, warp_thick, weft_thick).astype(np.uint8)
    codes = over.astype(np.uint8) * BIT_WARP_ON_TOP
    codes |= prev_on_top.astype(np.uint8) * BIT_PREV_ON_TOP
    codes |= next_on_top.astype(np.uint8) * BIT_NEXT_ON_TOP
    codes |= thick << THICK_SHIFT
    codes |= gap.astype(np.uint8) * BIT_GAP
    codes |= hole.astype(np.uint8) * BIT_HOLE
    return codes


def _yarn_top(along: np.ndarray, across: np.ndarray, width: float, prev: bool, nxt: bool):
    """Brightness of a yarn lying on top, and where it covers the cell.

    ``across`` is the position across the yarn (0..1 over its pitch), ``along`` the position
    along it inside this crossing cell.
    """
    r = (across - 0.5) / (width / 2)
    inside = np.abs(r) < 1.0
    # A round yarn lit from above: brightest on its crest, darker on its flanks.
    crest = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
    # Twisted fibres show as faint diagonal stripes; an integer number of periods per cell
    # keeps them continuous from one cell to the next.
    twist = 1.0 + 0.07 * np.sin(2 * np.pi * (2 * along + across))
    # Where the yarn dives under its neighbour it bends away from the light.
    dip = np.ones_like(along)
    if not prev:
        dip *= 1.0 - 0.45 * np.exp(-((along / 0.24) ** 2))
    if not nxt:
        dip *= 1.0 - 0.45 * np.exp(-(((1.0 - along) / 0.24) ** 2))
    return crest * twist * dip, inside


@cache
def shading_tables() -> tuple[np.ndarray, np.ndarray]:
    """The ``(code, v, u) -> brightness`` and ``-> warp visible`` lookup tables.

    Each table entry averages 4x4 sub-samples of its cell so that the quantisation does not
    alias. ``v`` is the position down the weft cell (along the warp), ``u`` across the warp cell.

    Returns:
        brightness (ndarray[NUM_CODES * CELL_LEVELS**2] float32), flat for ``np.take``;
        warp_visible (ndarray[NUM_CODES * CELL_LEVELS**2] bool).
    """
    sub = 4
    n = CELL_LEVELS * sub
    grid = (np.arange(n) + 0.5) / n
    v, u = np.meshgrid(grid, grid, indexing="ij")
    bright = np.empty((NUM_CODES, CELL_LEVELS, CELL_LEVELS), np.float32)
    visible = np.empty((NUM_CODES, CELL_LEVELS, CELL_LEVELS), bool)
    for code in range(NUM_CODES):
        warp_top = bool(code & BIT_WARP_ON_TOP)
        prev = bool(code & BIT_PREV_ON_TOP)
        nxt = bool(code & BIT_NEXT_ON_TOP)
        width = THICKNESS_FRACTIONS[(code >> THICK_SHIFT) & 3]
        gap = bool(code & BIT_GAP)
        along, across = (v, u) if warp_top else (u, v)
        top, inside = _yarn_top(along, across, width, prev, nxt)
        # The yarn underneath shows in the interstices, in the shadow of the top yarn.
        under = 0.42 * (0.6 + 0.4 * np.sqrt(np.clip(1 - (2 * along - 1) ** 2, 0, 1)))
        if gap:
            under = np.full_like(under, GAP_LEVEL)
        value = np.where(inside, top, under)
        if code & BIT_HOLE:
            value = np.full_like(value, GAP_LEVEL)
        warp_vis = inside if warp_top else ~inside
        bright[code] = value.reshape(CELL_LEVELS, sub, CELL_LEVELS, sub).mean(axis=(1, 3))
        frac = warp_vis.reshape(CELL_LEVELS, sub, CELL_LEVELS, sub).mean(axis=(1, 3))
        visible[code] = frac >= 0.5
    return bright.reshape(-1), visible.reshape(-1)
