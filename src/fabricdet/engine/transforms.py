"""Geometric transforms of an image and its boxes/masks: aspect-keeping resize, flips, crops.

Pure functions on numpy arrays; none modifies its input. Boxes are xyxy in absolute pixels
(float32) on both sides of every function.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Resize:
    """How one image was resized: enough to map detections back to the original.

    Attributes:
        orig_width, orig_height: size of the file's image.
        width, height: size the model sees.
    """

    orig_width: int
    orig_height: int
    width: int
    height: int

    @property
    def scale_x(self) -> float:
        return self.width / self.orig_width

    @property
    def scale_y(self) -> float:
        return self.height / self.orig_height


def resized_size(width: int, height: int, max_size: int, divisor: int) -> tuple[int, int]:
    """``(width, height)`` with the long side at ``max_size``, both sides multiples of ``divisor``.

    The aspect ratio is kept up to the rounding (2446x1000 at 1024/32 -> 1024x416): wide
    fabric images stay wide. Each side is at least ``divisor``.
    """
    scale = max_size / max(width, height)

    def side(n: int) -> int:
        return max(divisor, round(n * scale / divisor) * divisor)

    return side(width), side(height)


def resize_image(image: np.ndarray, max_size: int, divisor: int) -> tuple[np.ndarray, Resize]:
    """Resize an ``ndarray[H, W, 3]`` image; area interpolation when shrinking (no aliasing
    of the weave's fine periodic texture into moiré), linear when enlarging."""
    h, w = image.shape[:2]
    nw, nh = resized_size(w, h, max_size, divisor)
    if (nw, nh) == (w, h):
        return image, Resize(w, h, w, h)
    interp = cv2.INTER_AREA if nw * nh < w * h else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp), Resize(w, h, nw, nh)


def resize_boxes(boxes: np.ndarray, r: Resize, min_size: float = 1.0) -> np.ndarray:
    """Boxes of the original image in resized-image pixels.

    A box thinner than ``min_size`` after scaling (a one-pixel broken thread at scale 0.4) is
    widened about its centre to ``min_size``: the defect still covers a pixel, and detectors
    reject boxes of zero width. Boxes are clipped to the resized image.

    Args:
        boxes (ndarray[N, 4]): xyxy in original pixels.

    Returns:
        ndarray[N, 4] float32.
    """
    out = boxes.astype(np.float32).reshape(-1, 4) * np.array(
        [r.scale_x, r.scale_y, r.scale_x, r.scale_y], dtype=np.float32
    )
    for lo, hi, limit in ((0, 2, r.width), (1, 3, r.height)):
        centre = (out[:, lo] + out[:, hi]) / 2
        half = np.maximum(out[:, hi] - out[:, lo], min_size) / 2
        # Shift back inside the image rather than clip, so the widened box keeps its size.
        centre = np.clip(centre, half, limit - half)
        out[:, lo], out[:, hi] = centre - half, centre + half
    return np.clip(out, 0, [r.width, r.height, r.width, r.height]).astype(np.float32)


def unresize_boxes(boxes: np.ndarray, r: Resize) -> np.ndarray:
    """Boxes predicted on the resized image, back in original pixels, clipped to the image.

    Args:
        boxes (ndarray[N, 4]): xyxy in resized pixels.

    Returns:
        ndarray[N, 4] float32.
    """
    scale = np.array([r.scale_x, r.scale_y, r.scale_x, r.scale_y], dtype=np.float64)
    out = boxes.astype(np.float64).reshape(-1, 4) / scale
    limit = np.array([r.orig_width, r.orig_height, r.orig_width, r.orig_height])
    return np.clip(out, 0, limit).astype(np.float32)


def resize_masks(masks: np.ndarray, r: Resize) -> np.ndarray:
    """Binary masks resized with nearest-neighbour sampling.

    Args:
        masks (ndarray[N, H, W]): uint8 or bool, original size.

    Returns:
        ndarray[N, h, w] uint8, resized.
    """
    out = np.zeros((len(masks), r.height, r.width), dtype=np.uint8)
    for k, m in enumerate(masks):
        out[k] = cv2.resize(
            m.astype(np.uint8), (r.width, r.height), interpolation=cv2.INTER_NEAREST
        )
    return out


def unresize_masks(masks: np.ndarray, r: Resize) -> np.ndarray:
    """Mask probabilities predicted on the resized image, back at the original size.

    Args:
        masks (ndarray[N, h, w]): float probabilities (or binary).

    Returns:
        ndarray[N, H, W] float32 (bilinear, so thresholding afterwards keeps thin lines).
    """
    out = np.zeros((len(masks), r.orig_height, r.orig_width), dtype=np.float32)
    for k, m in enumerate(masks):
        out[k] = cv2.resize(
            m.astype(np.float32), (r.orig_width, r.orig_height), interpolation=cv2.INTER_LINEAR
        )
    return out


def flip_horizontal(
    image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror left-right.

    Args:
        image (ndarray[H, W, C]); boxes (ndarray[N, 4]) xyxy; masks (ndarray[N, H, W]) or None.
    """
    w = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    m = np.ascontiguousarray(masks[:, :, ::-1]) if masks is not None else None
    return np.ascontiguousarray(image[:, ::-1]), flipped, m


def flip_vertical(
    image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror top-bottom (same arguments as :func:`flip_horizontal`)."""
    h = image.shape[0]
    flipped = boxes.copy()
    flipped[:, 1], flipped[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    m = np.ascontiguousarray(masks[:, ::-1, :]) if masks is not None else None
    return np.ascontiguousarray(image[::-1]), flipped, m


def crop_window(
    width: int,
    height: int,
    crop: tuple[int, int],
    boxes: np.ndarray,
    rng: np.random.Generator,
    on_object: float,
) -> tuple[int, int, int, int]:
    """A training window ``(x0, y0, w, h)`` of at most ``crop = (w, h)`` inside the image.

    With probability ``on_object`` (when there are objects) the window holds the centre of a
    random object, anywhere in the window, so defects are seen at every position; otherwise it
    is uniform over the image (background crops keep the negatives).

    Args:
        boxes (ndarray[N, 4]): xyxy in image pixels.
    """
    w, h = min(crop[0], width), min(crop[1], height)
    if len(boxes) and rng.random() < on_object:
        x1, y1, x2, y2 = boxes[rng.integers(len(boxes))]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        lo_x, hi_x = max(0, int(np.ceil(cx)) - w), min(width - w, int(cx))
        lo_y, hi_y = max(0, int(np.ceil(cy)) - h), min(height - h, int(cy))
        x0 = int(rng.integers(lo_x, max(lo_x, hi_x) + 1))
        y0 = int(rng.integers(lo_y, max(lo_y, hi_y) + 1))
    else:
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
    return x0, y0, w, h


def crop(
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray | None,
    window: tuple[int, int, int, int],
    min_visible: float = 0.25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Cut a window out of an image and its objects.

    An object keeps its visible part when at least ``min_visible`` of its box area lies in the
    window, or when it is a thread cut across its length (its short side whole, what is left
    still at least twice as long as wide): a thread cut by the window is still a thread, but a
    sliver of a blob at the border is neither clearly a defect nor background, so it is
    dropped.

    Args:
        image (ndarray[H, W, C]); boxes (ndarray[N, 4]) xyxy; masks (ndarray[N, H, W]) or None;
        window: ``(x0, y0, w, h)``.

    Returns:
        image (ndarray[h, w, C]), boxes (ndarray[M, 4]) in window pixels, kept (ndarray[M]
        int64: indices of the kept objects), masks (ndarray[M, h, w]) or None.
    """
    x0, y0, w, h = window
    out = image[y0 : y0 + h, x0 : x0 + w]
    shifted = boxes.astype(np.float32).reshape(-1, 4) - np.array([x0, y0, x0, y0], np.float32)
    clipped = np.clip(shifted, 0, [w, h, w, h]).astype(np.float32)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    visible = area(clipped) / np.maximum(area(shifted), 1e-6)
    size, left = shifted[:, 2:] - shifted[:, :2], clipped[:, 2:] - clipped[:, :2]  # [N, 2] w, h
    short = size.argmin(1)
    rows = np.arange(len(size))
    thread = (left[rows, short] >= size[rows, short]) & (
        left[rows, 1 - short] >= 2 * left[rows, short]
    )
    nonempty = (left > 0).all(1)
    kept = np.flatnonzero(nonempty & ((visible >= min_visible) | thread))
    m = None
    if masks is not None:
        m = np.ascontiguousarray(masks[kept][:, y0 : y0 + h, x0 : x0 + w])
    return np.ascontiguousarray(out), clipped[kept], kept, m
