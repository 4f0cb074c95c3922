"""Configs and hand-made datasets for the engine tests (a uniquely named module, not
conftest, so test files and spawned processes import it unambiguously)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.rle import encode_mask
from fabricdet.engine import RunConfig, apply_overrides, preset

CATS = (Category(1, "hole"), Category(2, "knot"))

#: image id -> [(category id, (x1, y1, x2, y2))] of :func:`painted_dataset`.
PAINTED = {
    1: [(1, (20, 30, 80, 60)), (2, (200, 10, 290, 25))],
    2: [(2, (5, 70, 150, 110))],
    3: [],
}


def tiny(*overrides: str) -> RunConfig:
    """The ``tiny`` preset with overrides."""
    return apply_overrides(preset("tiny"), overrides)


def painted_dataset(root: Path, with_masks: bool = True) -> DetectionDataset:
    """Three 300x120 PNGs with filled rectangles whose colour encodes the class (category 1
    red, category 2 green) on black; image 3 is defect-free. Split ``train``."""
    root.mkdir(parents=True, exist_ok=True)
    recs = []
    for iid, objs in PAINTED.items():
        img = np.zeros((120, 300, 3), np.uint8)
        insts = []
        for cat, (x1, y1, x2, y2) in objs:
            img[y1:y2, x1:x2, cat - 1] = 255
            m = np.zeros((120, 300), np.uint8)
            m[y1:y2, x1:x2] = 1
            mask = encode_mask(m) if with_masks else None
            insts.append(Instance((float(x1), float(y1), float(x2), float(y2)), cat, mask))
        cv2.imwrite(str(root / f"{iid}.png"), img[:, :, ::-1])
        recs.append(ImageRecord(iid, f"{iid}.png", 300, 120, insts, "train"))
    return DetectionDataset(root, CATS, recs)
