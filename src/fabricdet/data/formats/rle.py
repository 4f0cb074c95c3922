"""COCO segmentations (polygons, uncompressed RLE, compressed RLE) to one stored form.

Masks are stored as compressed RLE with ``str`` counts (``{"size": [H, W], "counts": str}``):
small in memory, JSON-serialisable as is, and accepted by pycocotools after ``counts`` is
encoded to bytes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from fabricdet.data.formats.problems import RecordError

Rle = dict[str, Any]


def _bad(message: str) -> RecordError:
    return RecordError(
        "bad-mask",
        message,
        "write segmentation as polygons [[x1, y1, x2, y2, ...], ...] or as RLE "
        '{"size": [H, W], "counts": ...} matching the image size',
    )


def to_str_counts(rle: dict[str, Any]) -> Rle:
    """Copy of a pycocotools RLE with ``counts`` as ``str`` (JSON-ready)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def to_pycoco(rle: Rle) -> dict[str, Any]:
    """Copy of a stored RLE with ``bytes`` counts, as pycocotools' C functions want."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": list(rle["size"]), "counts": counts}


def segmentation_to_rle(segmentation: object, height: int, width: int) -> Rle:
    """Compressed RLE of a COCO segmentation for a ``height`` x ``width`` image.

    Args:
        segmentation: a list of polygons (each a flat list ``[x1, y1, x2, y2, ...]`` with at
            least 3 points), an uncompressed RLE (``counts`` a list of ints) or a compressed
            RLE (``counts`` a string).

    Raises:
        RecordError: malformed segmentation, or an RLE whose size is not the image's.
    """
    if isinstance(segmentation, list):
        polys = segmentation
        if not polys:
            raise _bad("segmentation is an empty polygon list")
        for poly in polys:
            if (
                not isinstance(poly, list)
                or len(poly) < 6
                or len(poly) % 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly)
            ):
                raise _bad(
                    "each polygon must be a flat list of at least 6 finite numbers "
                    f"(x, y pairs), got {str(poly)[:80]}"
                )
        rles = mask_utils.frPyObjects(polys, height, width)
        return to_str_counts(mask_utils.merge(rles))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = segmentation["size"]
        if not (isinstance(size, list) and len(size) == 2 and list(size) == [height, width]):
            raise _bad(f"RLE size {size!r} does not match the image size [{height}, {width}]")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise _bad("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise _bad(
                    f"uncompressed RLE counts sum to {sum(counts)}, not H*W = {height * width}"
                )
            return to_str_counts(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(counts, str):
            return {"size": [height, width], "counts": counts}
        raise _bad(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    raise _bad(f"unrecognised segmentation {str(segmentation)[:80]}")


def encode_mask(mask: np.ndarray) -> Rle:
    """Compressed RLE of a binary mask.

    Args:
        mask (ndarray[H, W]): nonzero = inside.
    """
    arr = np.asfortranarray(mask.astype(np.uint8, copy=False) != 0, dtype=np.uint8)
    return to_str_counts(mask_utils.encode(arr))


def decode_mask(rle: Rle) -> np.ndarray:
    """Binary mask of an RLE.

    Returns:
        ndarray[H, W] of bool.
    """
    with warnings.catch_warnings():
        # pycocotools' decode trips a numpy-2 DeprecationWarning about __array__(copy=...).
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(to_pycoco(rle)).astype(bool)


def rle_area(rle: Rle) -> int:
    """Number of pixels inside the mask."""
    return int(mask_utils.area(to_pycoco(rle)))


def rle_bbox(rle: Rle) -> tuple[float, float, float, float]:
    """Tight xyxy pixel-edge box of a mask (all zeros for an empty mask)."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(to_pycoco(rle)))
    return (x, y, x + w, y + h)
