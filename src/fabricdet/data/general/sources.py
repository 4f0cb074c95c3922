"""The photographs scikit-image ships (no download), as backgrounds and object textures.

Only images bundled inside the ``skimage`` wheel are used: :data:`BACKGROUND_PHOTOS` and
:data:`TEXTURE_PHOTOS` name ``skimage.data`` loaders whose files are in the package, so the
generator works offline. Photos are loaded once per process and kept as float32 RGB in [0, 1].
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import skimage.data

#: scenes: people, animals, objects, space, microscopy, textures. Grey photos become RGB.
BACKGROUND_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "grass",
    "gravel",
    "brick",
    "moon",
)

#: surfaces that fill the silhouettes and tiles.
TEXTURE_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "grass", "gravel", "brick", "text", "page")


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photograph as ``ndarray[H, W, 3]`` float32 RGB in [0, 1] (read-only).

    Raises:
        ValueError: ``name`` is not a bundled photograph this module knows.
    """
    if name == "motorcycle":
        # stereo_motorcycle returns (left, right, disparity); the left view is a street scene.
        raw = skimage.data.stereo_motorcycle()[0]
    elif name in BACKGROUND_PHOTOS or name in TEXTURE_PHOTOS:
        raw = getattr(skimage.data, name)()
    else:
        raise ValueError(
            f"unknown photograph {name!r}; known: {BACKGROUND_PHOTOS + TEXTURE_PHOTOS}"
        )
    img = np.asarray(raw)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    img.setflags(write=False)  # shared by every caller through the cache
    return img


def random_crop(
    rng: np.random.Generator, photo: np.ndarray, width: int, height: int, zoom: tuple[float, float]
) -> np.ndarray:
    """A ``height x width`` crop of ``photo`` scaled by a random zoom and maybe mirrored.

    Args:
        photo (ndarray[H, W, 3]): float32 RGB.
        zoom: the photo is first scaled to just cover the crop, then by a factor in this range.

    Returns:
        ndarray[height, width, 3] float32, a fresh array.
    """
    h, w = photo.shape[:2]
    scale = max(width / w, height / h) * rng.uniform(*zoom)
    # Round up so that the scaled photo always covers the crop.
    sw, sh = max(width, int(np.ceil(w * scale))), max(height, int(np.ceil(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(photo, (sw, sh), interpolation=interp)
    x0 = int(rng.integers(0, sw - width + 1))
    y0 = int(rng.integers(0, sh - height + 1))
    crop = scaled[y0 : y0 + height, x0 : x0 + width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop, dtype=np.float32)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random background: a cropped, scaled, mirrored bundled photo with jittered exposure.

    Returns:
        ndarray[height, width, 3] float32 RGB in [0, 1].
    """
    name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
    img = random_crop(rng, load_photo(name), width, height, zoom=(1.0, 2.5))
    if rng.random() < 0.3:
        img = img[::-1]  # upside down too: nothing in a background has to stand upright
    gain = rng.uniform(0.75, 1.2)
    offset = rng.uniform(-0.08, 0.08)
    return np.clip(img * gain + offset, 0.0, 1.0).astype(np.float32)


def texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A ``height x width`` patch of a bundled texture photo (float32 RGB in [0, 1])."""
    name = TEXTURE_PHOTOS[int(rng.integers(len(TEXTURE_PHOTOS)))]
    return random_crop(rng, load_photo(name), width, height, zoom=(1.0, 3.0))
