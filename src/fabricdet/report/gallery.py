"""Detections drawn on their images, beside the ground truth, and the choice of the best and
worst images of an evaluation.

Masks are drawn when the predictions carry them (COCO RLE dicts, or arrays/tensors of
probabilities), boxes otherwise; ground-truth objects are outlined in white.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps

from fabricdet.data.dataset import Instance
from fabricdet.data.formats.rle import decode_mask
from fabricdet.report.confusion import ImageOutcome

GT_COLOUR = (255, 255, 255)
_PALETTE = [
    tuple(int(255 * v) for v in reversed(colormaps["tab10"](k)[:3])) for k in range(10)
]  # BGR


def colour(label: int) -> tuple[int, int, int]:
    """BGR colour of a class (by its position among the categories)."""
    return _PALETTE[label % len(_PALETTE)]  # type: ignore[return-value]


def as_mask(mask: Any, threshold: float = 0.5) -> np.ndarray:
    """A boolean ``ndarray[H, W]`` from a COCO RLE dict, or an array or tensor of shape
    ``[H, W]`` or ``[1, H, W]`` (probabilities thresholded at ``threshold``, or booleans)."""
    if isinstance(mask, dict):
        return decode_mask(mask)
    if hasattr(mask, "detach"):  # a torch tensor, without importing torch
        mask = mask.detach().float().cpu().numpy()
    m = np.asarray(mask)
    m = m.reshape(m.shape[-2:])
    return m if m.dtype == bool else m >= threshold


def _label(out: np.ndarray, text: str, x: int, y: int, bg: tuple[int, int, int]) -> None:
    scale, thick = 0.5, 1
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    ty = y - 2 if y - th - base - 2 >= 0 else min(out.shape[0] - 1, y + th + 2)
    cv2.rectangle(out, (x, ty - th - base), (x + tw, ty + base), bg, -1)
    cv2.putText(out, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick)


def draw(
    image_bgr: np.ndarray,
    ground_truth: Sequence[Instance],
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    names: Sequence[str],
    masks: Sequence[Any] | None = None,
    mask_alpha: float = 0.45,
    width: int | None = None,
) -> np.ndarray:
    """The image with its ground truth (white outlines) and detections (class colours).

    Drawn at the display size (``width`` pixels wide, if given), so that lines and names stay
    legible whatever the image size.

    Args:
        image_bgr (ndarray[H, W, 3]): uint8, BGR; not modified.
        boxes (ndarray[N, 4]): xyxy pixels; labels (ndarray[N]): positions in ``names``;
        scores (ndarray[N]).
        masks: ``N`` masks (see :func:`as_mask`) of the image's size, or None for
            box-only detections.

    Returns:
        ndarray[H', W', 3] uint8 BGR (``W' = width``, or the image's own size).
    """
    h, w = image_bgr.shape[:2]
    s = width / w if width else 1.0
    size = (round(w * s), round(h * s))
    out = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    if masks is not None:
        for m, label in zip(masks, labels, strict=True):
            inside = as_mask(m)
            if inside.shape != (h, w):
                continue  # a mask of another image size cannot be placed
            if s != 1.0:
                inside = cv2.resize(inside.astype(np.uint8), size, cv2.INTER_NEAREST) > 0
            tint = np.array(colour(int(label)), dtype=np.float32)
            out[inside] = (out[inside] * (1 - mask_alpha) + tint * mask_alpha).astype(np.uint8)
    for inst in ground_truth:
        x1, y1, x2, y2 = (round(v * s) for v in inst.box)
        cv2.rectangle(out, (x1, y1), (max(x2, x1 + 1), max(y2, y1 + 1)), GT_COLOUR, 1)
    for box, label, score in zip(boxes, labels, scores, strict=True):
        c = colour(int(label))
        x1, y1, x2, y2 = (round(float(v) * s) for v in box)
        cv2.rectangle(out, (x1, y1), (max(x2, x1 + 1), max(y2, y1 + 1)), c, 2)
        _label(out, f"{names[int(label)]} {float(score):.2f}", x1, y1, c)
    return out


def best_and_worst(
    outcomes: Sequence[ImageOutcome], count: int
) -> tuple[list[ImageOutcome], list[ImageOutcome]]:
    """The ``count`` best images and the ``count`` worst, never the same image twice.

    The worst are chosen first: most errors (wrong class, false positive, missed), then lowest
    F1; images without errors are never among them. The best are the other images with
    objects: highest F1, fewest errors, most objects.
    """
    wrong = [o for o in outcomes if o.errors]
    worst = sorted(wrong, key=lambda o: (-o.errors, o.f1))[:count]
    taken = {o.image_id for o in worst}
    rest = [o for o in outcomes if o.num_gt and o.image_id not in taken]
    best = sorted(rest, key=lambda o: (-o.f1, o.errors, -o.num_gt))[:count]
    return best, worst


def caption(file_name: str, o: ImageOutcome) -> str:
    return (
        f"{file_name}: {o.correct} right, {o.confused} wrong class, {o.false_positives} "
        f"false positive(s), {o.missed} missed of {o.num_gt} (F1 {o.f1:.2f})"
    )
