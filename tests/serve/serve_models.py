"""Test models and images for the service tests (a uniquely named module, not conftest, so
test files and ``load_model`` import it unambiguously).

``PaintedDetector`` finds the filled rectangles of :func:`painted_png` (colour channel =
label) with connected components: exact, mask-predicting and instant. Its ``gate``,
``entered`` and ``fail`` hooks let tests hold an inference mid-way or make it crash.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from fabricdet.data.categories import Category
from fabricdet.engine import apply_overrides, preset
from fabricdet.engine.checkpoint import save_model_file
from fabricdet.models.config import ModelConfig

CATS = (Category(1, "hole"), Category(2, "knot"))
#: (category id, (x1, y1, x2, y2)) of the rectangles of :func:`painted_png`.
PAINTED = [(1, (20, 30, 80, 60)), (2, (200, 10, 290, 25))]
SIZE = (300, 120)  # width, height
#: limits of the test apps: small enough that the refusals are cheap to trigger.
MAX_BYTES = 200_000
MAX_PIXELS = 1_000_000


class PaintedDetector(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.nms_method = cfg.nms
        self.gate: threading.Event | None = None  # forward waits for it when set
        self.entered = threading.Event()  # set when a forward pass starts
        self.fail = False  # raise RuntimeError in forward

    def forward(self, images: list[Tensor], targets: object = None) -> list[dict[str, Tensor]]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.fail:
            raise RuntimeError("painted detector told to fail")
        return [self._detect(image) for image in images]

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        boxes, labels, masks = [], [], []
        for label in range(self.num_classes):
            on = (image[label] > 0.5).cpu().numpy().astype(np.uint8)
            n, comp, stats, _ = cv2.connectedComponentsWithStats(on)
            for k in range(1, n):
                x, y, w, h = stats[k, :4]
                boxes.append([x, y, x + w, y + h])
                labels.append(label)
                masks.append(torch.from_numpy(comp == k).float()[None])
        h, w = image.shape[-2:]
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.full((len(boxes),), 0.9),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.stack(masks) if masks else torch.zeros((0, 1, h, w)),
        }


def build_painted(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return PaintedDetector(cfg, num_classes)


def save_painted_model(path: Path) -> Path:
    cfg = apply_overrides(preset("tiny"), ["data.max_size=320"])
    save_model_file(path, PaintedDetector(cfg.model, 2), cfg, CATS, "serve_models:build_painted", 0)
    return path


def save_real_model(path: Path) -> Path:
    """The real detector (``tiny`` preset), untrained but seeded: its detections are
    arbitrary yet deterministic, and it costs milliseconds instead of a training run."""
    from fabricdet.models import build_model

    torch.manual_seed(0)
    cfg = preset("tiny")
    model = build_model(cfg.model, len(CATS))
    save_model_file(path, model, cfg, CATS, "fabricdet.models:build_model", 0)
    return path


def painted_png(path: Path) -> Path:
    """A 300x120 PNG: black, a red rectangle (category 1) and a green one (category 2)."""
    img = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    for cat, (x1, y1, x2, y2) in PAINTED:
        img[y1:y2, x1:x2, cat - 1] = 255
    cv2.imwrite(str(path), img[:, :, ::-1])
    return path
