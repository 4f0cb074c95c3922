"""The object categories: each a function drawing one instance as a patch and its exact mask.

Three categories are cutouts of real photographs scikit-image ships (coins segmented from
``coins``, the ``horse`` silhouette filled with a photographed surface, faces of
``lfw_subset``); four are shaded shapes (ball, star, ring, tile). Every maker returns
``(patch, mask)``: ``patch`` (ndarray[h, w, 3] float32 RGB in [0, 1]) and ``mask``
(ndarray[h, w] bool) whose long side is about ``size`` pixels; the mask is the exact set of
pixels the compositor paints, so it is the ground truth, not an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import skimage.data
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from fabricdet.data.categories import Category
from fabricdet.data.general.sources import texture

Patch = tuple[np.ndarray, np.ndarray]
Maker = Callable[[np.random.Generator, int], Patch]

#: the categories, in label order; ids are what the COCO file holds.
GENERAL_CATEGORIES: tuple[Category, ...] = (
    Category(1, "coin"),
    Category(2, "horse"),
    Category(3, "face"),
    Category(4, "ball"),
    Category(5, "star"),
    Category(6, "ring"),
    Category(7, "tile"),
)


@lru_cache(maxsize=1)
def _coin_cutouts() -> tuple[Patch, ...]:
    """Each coin of ``skimage.data.coins`` with its segmented mask (grey patch as RGB)."""
    img = skimage.data.coins().astype(np.float32) / 255.0
    fg = ndi.binary_fill_holes(ndi.binary_opening(img > threshold_otsu(img), iterations=2))
    labels, _ = ndi.label(fg)
    cutouts = []
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        mask = labels[sl] == k
        # Single coins only: specks are too small, touching pairs too big.
        if not 800 <= mask.sum() <= 3500:
            continue
        patch = np.repeat(img[sl][..., None], 3, axis=2)
        cutouts.append((patch, mask))
    return tuple(cutouts)


@lru_cache(maxsize=1)
def _horse_mask() -> np.ndarray:
    """The tight silhouette of ``skimage.data.horse`` (True = horse)."""
    mask = ~skimage.data.horse()
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    """The 100 face crops of ``lfw_subset`` (the other 100 are non-faces), float32 [100, 25, 25]."""
    return skimage.data.lfw_subset()[:100].astype(np.float32)


def _resize(patch: np.ndarray, mask: np.ndarray, size: int) -> Patch:
    """Scale so that the long side is ``size``; the mask stays binary (nearest neighbour)."""
    h, w = mask.shape
    scale = size / max(h, w)
    nw, nh = max(2, round(w * scale)), max(2, round(h * scale))
    out = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_LINEAR)
    m = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
    return out.astype(np.float32), m


def _colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.4, 1.0)) -> np.ndarray:
    """A random RGB colour (float32[3]) of the given saturation range, mid to high value."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(0.55, 1.0) * 255]]],
        dtype=np.uint8,
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] of an ``n x n`` patch: ``(x, y)``."""
    t = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    return np.meshgrid(t, t)


def coin(rng: np.random.Generator, size: int) -> Patch:
    """A real coin cut out of ``skimage.data.coins``, tinted copper, brass or silver."""
    cutouts = _coin_cutouts()
    patch, mask = cutouts[int(rng.integers(len(cutouts)))]
    tint = np.array(
        [(1.0, 0.62, 0.4), (1.0, 0.85, 0.45), (0.92, 0.93, 0.95)][int(rng.integers(3))],
        dtype=np.float32,
    )
    return _resize(np.clip(patch * tint * rng.uniform(0.8, 1.3), 0, 1), mask, size)


def horse(rng: np.random.Generator, size: int) -> Patch:
    """The ``horse`` silhouette filled with a photographed surface, shaded top to bottom."""
    mask = _horse_mask()
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    h, w = mask.shape
    tint = _colour(rng, (0.2, 0.7))
    fill = texture(rng, w, h) * 0.5 + tint * 0.5
    shade = np.linspace(1.1, 0.7, h, dtype=np.float32)[:, None, None]
    return _resize(np.clip(fill * shade, 0, 1), mask, size)


def face(rng: np.random.Generator, size: int) -> Patch:
    """A face of ``lfw_subset`` in an elliptical cutout, in a skin tone."""
    faces = _faces()
    grey = faces[int(rng.integers(len(faces)))]
    if rng.random() < 0.5:
        grey = grey[:, ::-1]
    n = 64  # upsample the 25 px crop first so that the ellipse edge is smooth at any size
    grey = cv2.resize(np.ascontiguousarray(grey), (n, n), interpolation=cv2.INTER_CUBIC)
    x, y = _grid(n)
    mask = (x / 0.8) ** 2 + y**2 <= 1.0
    skin = np.array([(1.0, 0.8, 0.65), (0.85, 0.62, 0.45), (0.6, 0.42, 0.3)][int(rng.integers(3))])
    patch = np.clip(grey[..., None] * 1.2 * skin.astype(np.float32), 0, 1)
    return _resize(patch, mask, size)


def ball(rng: np.random.Generator, size: int) -> Patch:
    """A sphere lit from a random direction: diffuse shading plus a specular highlight."""
    n = max(size, 8)
    x, y = _grid(n)
    r2 = x**2 + y**2
    mask = r2 <= 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.2), 0.8], dtype=np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip(x * light[0] + y * light[1] + z * light[2], 0, 1)
    spec = lambert ** rng.uniform(20, 60) * rng.uniform(0.3, 0.8)
    patch = _colour(rng) * (0.25 + 0.75 * lambert)[..., None] + spec[..., None]
    return np.clip(patch, 0, 1).astype(np.float32), mask


def star(rng: np.random.Generator, size: int) -> Patch:
    """A five- or six-pointed star with a colour gradient (points make boxes overlap more
    than the shapes do: neighbours interlock)."""
    n = max(size, 8)
    points = int(rng.choice([5, 6]))
    inner = rng.uniform(0.38, 0.55)
    phase = rng.uniform(0, 2 * np.pi)
    angles = phase + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    poly = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    poly = ((poly + 1) / 2 * (n - 1)).round().astype(np.int32)
    mask = cv2.fillPoly(np.zeros((n, n), np.uint8), [poly], 1) > 0
    x, y = _grid(n)
    a, b = _colour(rng), _colour(rng)
    t = np.clip((x + y) / 4 + 0.5, 0, 1)[..., None]
    patch = a * (1 - t) + b * t
    return np.clip(patch, 0, 1).astype(np.float32), mask


def ring(rng: np.random.Generator, size: int) -> Patch:
    """An annulus with metallic shading around it (its hole shows what lies behind)."""
    n = max(size, 8)
    x, y = _grid(n)
    r = np.sqrt(x**2 + y**2)
    mask = (r <= 1.0) & (r >= rng.uniform(0.45, 0.7))
    angle = np.arctan2(y, x)
    shade = 0.65 + 0.35 * np.cos(angle - rng.uniform(0, 2 * np.pi))
    patch = _colour(rng, (0.0, 0.6)) * shade[..., None]
    return np.clip(patch, 0, 1).astype(np.float32), mask


def tile(rng: np.random.Generator, size: int) -> Patch:
    """A rectangle of a photographed surface with a dark frame."""
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    w, h = (
        (size, max(4, round(size / aspect)))
        if aspect >= 1
        else (max(4, round(size * aspect)), size)
    )
    patch = texture(rng, w, h)
    border = max(1, round(min(w, h) * 0.08))
    frame = np.ones((h, w), bool)
    frame[border:-border, border:-border] = False
    patch[frame] *= 0.35
    return np.clip(patch, 0, 1).astype(np.float32), np.ones((h, w), bool)


#: category id -> maker; ``GENERAL_CATEGORIES`` and this map list the same ids.
MAKERS: dict[int, Maker] = {1: coin, 2: horse, 3: face, 4: ball, 5: star, 6: ring, 7: tile}

#: how far each category may be turned, in degrees (faces and horses stay roughly upright).
MAX_ROTATION: dict[int, float] = {1: 180, 2: 15, 3: 20, 4: 0, 5: 180, 6: 0, 7: 180}


def rotate(patch: np.ndarray, mask: np.ndarray, degrees: float) -> Patch:
    """Turn a patch and its mask, growing the canvas so nothing is cut, then crop to the mask.

    The mask is warped with nearest neighbour so that it stays binary and exact for the
    painted patch (the compositor paints the patch where the mask is set).
    """
    if degrees == 0:
        return patch, mask
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)) + 1, int(np.ceil(h * cos + w * sin)) + 1
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(patch, m, (nw, nh), flags=cv2.INTER_LINEAR)
    msk = cv2.warpAffine(mask.astype(np.uint8), m, (nw, nh), flags=cv2.INTER_NEAREST) > 0
    rows, cols = np.nonzero(msk)
    if rows.size == 0:
        return patch, mask
    sl = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return out[sl], msk[sl]


def make_object(rng: np.random.Generator, category_id: int, size: int) -> Patch:
    """One instance of a category, ``size`` px on its long side before rotation, turned at
    random within the category's range, with jittered exposure."""
    patch, mask = MAKERS[category_id](rng, int(size))
    limit = MAX_ROTATION[category_id]
    if limit:
        patch, mask = rotate(patch, mask, float(rng.uniform(-limit, limit)))
    gain = np.float32(rng.uniform(0.8, 1.15))
    return np.clip(patch * gain, 0, 1).astype(np.float32), mask
