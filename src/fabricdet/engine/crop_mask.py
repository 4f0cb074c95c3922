"""Masks of detections kept cropped to their own pixels, placed in image (or roll) pixels.

A roll is a virtual image tens of thousands of rows long, so a full-image mask per detection
(``H x W`` bytes each) is out of the question. A :class:`CropMask` holds only the binary
array over the defect's own extent and where that array lies: memory follows the defect's
size, not the roll's. Masks of one defect seen by several windows are joined by
:func:`union_masks` (a thread cut by window seams: each window holds one piece).

The JSON form (``defects.json``, the resume file of ``inspect``) is the COCO compressed RLE of
the crop plus its offset: ``{"x0": int, "y0": int, "size": [h, w], "counts": str}`` - decode
the RLE and place its top-left pixel at column ``x0``, row ``y0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fabricdet.data.formats.rle import decode_mask, encode_mask
from fabricdet.engine.transforms import Resize

#: Probability at or above which a pixel is inside a mask (as ``fabricdet detect`` uses).
MASK_THRESHOLD = 0.5

#: Pixels added around a detection's box when cropping its mask: box edges are real numbers,
#: and a mask pixel straddling the box edge belongs to the defect.
BOX_MARGIN = 1


@dataclass(frozen=True)
class CropMask:
    """A binary mask stored over its own extent.

    Attributes:
        x0, y0: image column and row of ``mask[0, 0]``.
        mask (ndarray[h, w] bool): the defect's pixels; not modified once made.
    """

    x0: int
    y0: int
    mask: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the array in image pixels (pixel edges, exclusive end)."""
        h, w = self.mask.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def area(self) -> int:
        """Pixels inside."""
        return int(np.count_nonzero(self.mask))

    def shifted(self, dx: int, dy: int) -> CropMask:
        """The same mask ``dx`` columns right and ``dy`` rows down (a tile's offset)."""
        return CropMask(self.x0 + int(dx), self.y0 + int(dy), self.mask)

    def window(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The mask over the image window ``[x0, x1) x [y0, y1)``: ndarray[y1-y0, x1-x0] bool
        (pixels of the mask outside the window are left out)."""
        out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        bx0, by0, bx1, by1 = self.box
        lo_x, lo_y, hi_x, hi_y = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
        if hi_x > lo_x and hi_y > lo_y:
            out[lo_y - y0 : hi_y - y0, lo_x - x0 : hi_x - x0] = self.mask[
                lo_y - by0 : hi_y - by0, lo_x - bx0 : hi_x - bx0
            ]
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"x0", "y0", "size": [h, w], "counts"}``: the crop's COCO RLE and its offset."""
        return {"x0": self.x0, "y0": self.y0, **encode_mask(self.mask)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> CropMask:
        """Inverse of :meth:`to_json`."""
        rle = {"size": data["size"], "counts": data["counts"]}
        return CropMask(int(data["x0"]), int(data["y0"]), decode_mask(rle))


def tight(x0: int, y0: int, binary: np.ndarray) -> CropMask | None:
    """A :class:`CropMask` of ``binary`` (ndarray[h, w], placed at ``x0, y0``) trimmed to its
    pixels' extent; None when it has no pixel (the detection then falls back to its box)."""
    rows = np.flatnonzero(binary.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(binary.any(0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CropMask(x0 + c0, y0 + r0, binary[r0:r1, c0:c1].astype(bool, copy=True))


def crop_model_mask(
    probabilities: np.ndarray,
    box: Sequence[float],
    resize: Resize,
    threshold: float = MASK_THRESHOLD,
) -> CropMask | None:
    """One detection's mask, from the model's resolution to original pixels, cropped to its
    box (plus :data:`BOX_MARGIN`).

    Only the box is resampled, never the whole image: the result equals bilinear resizing of
    the full mask to the original size (as :func:`fabricdet.engine.transforms.unresize_masks`
    does) and cropping, without the ``H x W`` array per detection.

    Args:
        probabilities (ndarray[h, w]): the mask as the model gave it (resized-image pixels).
        box: ``(x1, y1, x2, y2)`` in original pixels.
        resize: how the image was resized for the model.

    Returns:
        The mask in original pixels, trimmed to its pixels; None when empty.
    """
    x0 = max(0, math.floor(box[0]) - BOX_MARGIN)
    y0 = max(0, math.floor(box[1]) - BOX_MARGIN)
    x1 = min(resize.orig_width, math.ceil(box[2]) + BOX_MARGIN)
    y1 = min(resize.orig_height, math.ceil(box[3]) + BOX_MARGIN)
    if x1 <= x0 or y1 <= y0:
        return None
    probs = np.asarray(probabilities, dtype=np.float32)
    if (resize.width, resize.height) == (resize.orig_width, resize.orig_height):
        region = probs[y0:y1, x0:x1]
    else:
        # Original pixel centre X sits at (X + 0.5) * scale - 0.5 in the resized image, the
        # mapping of cv2.resize; the inverse-map affine samples exactly those points.
        sx, sy = resize.scale_x, resize.scale_y
        warp = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
        region = cv2.warpAffine(
            probs,
            warp,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return tight(x0, y0, region >= threshold)


def union_masks(masks: Sequence[CropMask | None]) -> CropMask | None:
    """The union of several masks (pieces of one defect); None entries are skipped, and the
    result is None when every entry is."""
    present = [m for m in masks if m is not None]
    if len(present) <= 1:
        return present[0] if present else None
    boxes = np.array([m.box for m in present])
    x0, y0 = int(boxes[:, 0].min()), int(boxes[:, 1].min())
    x1, y1 = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for m in present:
        mx0, my0, mx1, my1 = m.box
        out[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0] |= m.mask
    return CropMask(x0, y0, out)


def owned_unions(
    masks: Sequence[CropMask | None] | None, owner: np.ndarray, count: int
) -> tuple[CropMask | None, ...] | None:
    """The masks of ``count`` merged detections: each the union of the input masks it owns.

    Args:
        masks: the input detections' masks, or None (box-only: the result is None too).
        owner (ndarray[N] int): the output each input detection went into, -1 for none (a
            dropped duplicate).
    """
    if masks is None:
        return None
    members: list[list[CropMask | None]] = [[] for _ in range(count)]
    for mask, k in zip(masks, owner.tolist(), strict=True):
        if k >= 0:
            members[k].append(mask)
    return tuple(union_masks(m) for m in members)
