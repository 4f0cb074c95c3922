"""A hand-painted dataset and an imperfect detector for the report tests (uniquely named
modules, not conftest, so ``load_model`` can import the detector by name).

Images are 200x100 PNGs on black: a defect is a filled rectangle whose colour channel is its
class (hole red, knot green, stain blue); a grey square is a distractor. The detector finds
every rectangle by connected components, but calls a rectangle taller than wide by the next
class (a confusion), misses rectangles under 40 pixels and takes grey squares for holes (false
positives): every section of the report then has something to show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.rle import encode_mask
from fabricdet.engine import RunConfig, apply_overrides, preset
from fabricdet.engine.checkpoint import save_model_file
from fabricdet.models.config import ModelConfig

CATS = (Category(1, "hole"), Category(2, "knot"), Category(3, "stain"))
SIZE = (200, 100)

#: image id -> ([(category id, (x1, y1, x2, y2))], [grey distractor boxes]).
PAINTED: dict[int, tuple[list[tuple[int, tuple[int, int, int, int]]], list[tuple[int, ...]]]] = {
    1: ([(1, (10, 10, 60, 40)), (2, (100, 20, 180, 50))], []),  # both right
    2: ([(3, (20, 50, 90, 90)), (1, (150, 10, 170, 90))], []),  # the tall hole: a knot
    3: ([(2, (30, 30, 80, 70))], [(120, 20, 160, 60)]),  # a false positive
    4: ([(1, (50, 50, 54, 54)), (3, (100, 10, 190, 40))], []),  # the tiny hole missed
    5: ([], []),  # normal, nothing found
    6: ([], [(20, 20, 60, 60)]),  # normal, a false positive
}


def painted_dataset(root: Path, with_masks: bool = True) -> DetectionDataset:
    """The images of :data:`PAINTED`, written as PNGs under ``root``; split ``val``."""
    root.mkdir(parents=True, exist_ok=True)
    w, h = SIZE
    records = []
    for iid, (objects, grey) in PAINTED.items():
        img = np.zeros((h, w, 3), np.uint8)
        instances = []
        for cat, (x1, y1, x2, y2) in objects:
            img[y1:y2, x1:x2, cat - 1] = 255
            m = np.zeros((h, w), np.uint8)
            m[y1:y2, x1:x2] = 1
            mask = encode_mask(m) if with_masks else None
            instances.append(Instance((float(x1), float(y1), float(x2), float(y2)), cat, mask))
        for x1, y1, x2, y2 in grey:
            img[y1:y2, x1:x2] = 128
        cv2.imwrite(str(root / f"{iid}.png"), img[:, :, ::-1])
        records.append(ImageRecord(iid, f"{iid}.png", w, h, instances, "val"))
    return DetectionDataset(root, CATS, records)


class FlawedDetector(nn.Module):
    """The detector described in the module doc (masks too when ``with_masks``)."""

    def __init__(self, cfg: ModelConfig, num_classes: int, with_masks: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.with_masks = with_masks
        self.nms_method = cfg.nms

    def _find(self, on: np.ndarray) -> list[tuple[list[int], np.ndarray]]:
        n, comp, stats, _ = cv2.connectedComponentsWithStats(on.astype(np.uint8))
        return [
            ([int(v) for v in stats[k, :4]], comp == k) for k in range(1, n) if stats[k, 4] >= 40
        ]

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]]:
        outs = []
        for image in images:
            img = image.numpy()
            found: list[tuple[list[int], int, float, np.ndarray]] = []
            for label in range(self.num_classes):
                for (x, y, w, h), m in self._find(img[label] > 0.75):
                    wrong = (label + 1) % self.num_classes if h > w else label
                    found.append(([x, y, x + w, y + h], wrong, 0.9 - 0.1 * label, m))
            grey = ((img > 0.3) & (img < 0.7)).all(0)
            for (x, y, w, h), m in self._find(grey):
                found.append(([x, y, x + w, y + h], 0, 0.6, m))
            hh, ww = image.shape[-2:]
            out = {
                "boxes": torch.tensor([f[0] for f in found], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([f[2] for f in found], dtype=torch.float32),
                "labels": torch.tensor([f[1] for f in found], dtype=torch.int64),
            }
            if self.with_masks:
                masks = [torch.from_numpy(f[3]).float()[None] for f in found]
                out["masks"] = torch.stack(masks) if masks else torch.zeros((0, 1, hh, ww))
            outs.append(out)
        return outs


def build_flawed(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return FlawedDetector(cfg, num_classes)


def build_flawed_boxes(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return FlawedDetector(cfg, num_classes, with_masks=False)


def config() -> RunConfig:
    """The ``tiny`` preset at this dataset's scale, scoring from 0.5."""
    return apply_overrides(
        preset("tiny"),
        ["data.max_size=256", "eval.score_threshold=0.5", "eval.defect_threshold=0.5"],
    )


def save_flawed(path: Path, with_masks: bool = True) -> Path:
    """Write the flawed detector as ``path`` (a ``model.pt``)."""
    factory = "report_testdata:" + ("build_flawed" if with_masks else "build_flawed_boxes")
    model = FlawedDetector(config().model, len(CATS), with_masks)
    save_model_file(path, model, config(), CATS, factory, 0)
    return path
