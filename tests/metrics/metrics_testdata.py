"""Small in-memory datasets and predictions for the metric tests.

A uniquely named module (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.rle import encode_mask
from fabricdet.metrics.predictions import Predictions

CATS = (Category(1, "hole", ("破洞",)), Category(2, "stain", ("水渍",)))


def dataset(
    images: dict[int, list[tuple[int, tuple[float, float, float, float]]]],
    size: tuple[int, int] = (100, 50),
) -> DetectionDataset:
    """``{image_id: [(category_id, box), ...]}`` -> dataset of ``size`` (w, h) images."""
    recs = [
        ImageRecord(
            iid,
            f"defect_Images/{iid}.jpg",
            size[0],
            size[1],
            [Instance(tuple(map(float, b)), c) for c, b in objs],
        )
        for iid, objs in images.items()
    ]
    return DetectionDataset(Path("."), CATS, recs)


def preds(rows: list[tuple[int, int, tuple[float, float, float, float], float]]) -> Predictions:
    """``[(image_id, category_id, box, score), ...]`` -> Predictions."""
    if not rows:
        return Predictions.empty()
    return Predictions(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows]),
    )


def perfect(ds: DetectionDataset) -> Predictions:
    return preds([(r.image_id, i.category_id, i.box, 0.9) for r in ds.images for i in r.instances])


def rect_mask(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def masked_instance(cat: int, mask: np.ndarray) -> Instance:
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return Instance(box, cat, mask=encode_mask(mask))
