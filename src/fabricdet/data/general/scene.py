"""One scene: a photographed background with crowded, overlapping objects and exact masks.

Objects come in same-class groups whose members are placed next to, and partly over, one
another (each new member a fraction of its size away from an earlier one, in a random
direction), plus scattered singles. All objects are painted in one random depth order, so a
group's members occlude each other and other objects. An object's annotation is what stays
visible: its mask minus everything painted after it, clipped to the image; its box is that
mask's extent. Objects mostly hidden (below ``min_visible``) or tiny are painted but not
annotated, as COCO leaves out what cannot be seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fabricdet.data.dataset import Instance
from fabricdet.data.formats.rle import encode_mask
from fabricdet.data.general.config import GeneralConfig
from fabricdet.data.general.objects import GENERAL_CATEGORIES, make_object
from fabricdet.data.general.sources import background


@dataclass(frozen=True)
class _Placement:
    """Where one object goes: its category, long side (px) and centre (x, y) in the image."""

    category_id: int
    size: float
    cx: float
    cy: float


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of the dataset ``seed`` (independent of the others,
    so that any image can be rendered alone and the same seed gives the same dataset)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 7]))


def _plan(
    rng: np.random.Generator, width: int, height: int, cfg: GeneralConfig
) -> list[_Placement]:
    """Groups then singles, in no particular depth order."""
    short = min(width, height)
    lo, hi = np.log(cfg.object_size[0] * short), np.log(cfg.object_size[1] * short)
    ids = [c.id for c in GENERAL_CATEGORIES]
    placements: list[_Placement] = []
    for _ in range(int(rng.integers(cfg.groups[0], cfg.groups[1] + 1))):
        cat = int(rng.choice(ids))
        base = float(np.exp(rng.uniform(lo, hi)))
        members = [(float(rng.uniform(0, width)), float(rng.uniform(0, height)), base)]
        for _ in range(int(rng.integers(cfg.group_members[0], cfg.group_members[1] + 1)) - 1):
            # Grow the cluster from a random earlier member: chains, clumps and rows all occur.
            px, py, ps = members[int(rng.integers(len(members)))]
            size = base * float(np.exp(rng.uniform(-cfg.member_jitter, cfg.member_jitter)))
            dist = rng.uniform(*cfg.spacing) * (ps + size) / 2
            angle = rng.uniform(0, 2 * np.pi)
            members.append((px + dist * np.cos(angle), py + dist * np.sin(angle), size))
        placements += [_Placement(cat, s, x, y) for x, y, s in members]
    for _ in range(int(rng.integers(cfg.singles[0], cfg.singles[1] + 1))):
        placements.append(
            _Placement(
                int(rng.choice(ids)),
                float(np.exp(rng.uniform(lo, hi))),
                float(rng.uniform(0, width)),
                float(rng.uniform(0, height)),
            )
        )
    return placements


def _paint(
    canvas: np.ndarray, patch: np.ndarray, mask: np.ndarray, cx: float, cy: float
) -> tuple[np.ndarray, int]:
    """Paint ``patch`` where ``mask`` is set, centred at ``(cx, cy)``, clipped to the canvas.

    Returns:
        ``(full, whole)``: the painted pixels as an image-sized bool mask, and the number of
        mask pixels the object has in all (inside the image or not).
    """
    H, W = canvas.shape[:2]
    h, w = mask.shape
    x0, y0 = int(np.floor(cx - w / 2 + 0.5)), int(np.floor(cy - h / 2 + 0.5))
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    full = np.zeros((H, W), bool)
    if ix1 > ix0 and iy1 > iy0:
        m = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        p = patch[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        region = canvas[iy0:iy1, ix0:ix1]
        region[m] = p[m]
        full[iy0:iy1, ix0:ix1] = m
    return full, int(mask.sum())


def render_scene(
    seed: int, index: int, size: tuple[int, int], cfg: GeneralConfig | None = None
) -> tuple[np.ndarray, list[Instance]]:
    """Render image ``index`` of dataset ``seed``.

    Args:
        size: ``(width, height)`` in pixels.

    Returns:
        ``(image, instances)``: ``image`` (ndarray[H, W, 3] uint8 RGB) and the visible objects,
        top of the depth order first, each with its exact visible mask (compressed RLE) and
        the mask's pixel-edge box ``(c0, r0, c1 + 1, r1 + 1)``.
    """
    cfg = cfg or GeneralConfig()
    width, height = size
    rng = scene_rng(seed, index)
    canvas = background(rng, width, height)
    plan = [] if rng.random() < cfg.empty_fraction else _plan(rng, width, height, cfg)
    order = rng.permutation(len(plan))  # depth: later is in front
    painted: list[tuple[int, np.ndarray, int]] = []
    for k in order:
        p = plan[int(k)]
        patch, mask = make_object(rng, p.category_id, max(6, round(p.size)))
        full, whole = _paint(canvas, patch, mask, p.cx, p.cy)
        painted.append((p.category_id, full, whole))
    instances: list[Instance] = []
    covered = np.zeros((height, width), bool)
    for cat, full, whole in reversed(painted):  # front to back
        visible = full & ~covered
        covered |= full
        area = int(visible.sum())
        if area < cfg.min_area or area < cfg.min_visible * whole:
            continue
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        instances.append(Instance(box=box, category_id=cat, mask=encode_mask(visible)))
    sigma = rng.uniform(*cfg.noise_sigma) / 255.0
    image = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(sigma)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), instances
