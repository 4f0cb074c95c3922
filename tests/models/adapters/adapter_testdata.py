"""Tiny torchvision hosts and a tiny batch for the adapter tests (fast on 2 CPU cores)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fabricdet.models.adapters import tiny_torchvision_detector

NUM_CLASSES = 3
SIZE = 128
TWO_STAGE = ("fasterrcnn", "maskrcnn")


def tiny_host(arch: str, **kwargs: Any) -> nn.Module:
    """A seeded, narrow torchvision detector that does not resize 128x128 images."""
    torch.manual_seed(0)
    if arch in TWO_STAGE:
        rpn = {
            "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
            "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100,
            "box_batch_size_per_image": 64,
        }  # fmt: skip
        kwargs = {**rpn, **kwargs}
    return tiny_torchvision_detector(
        arch, NUM_CLASSES, width=8, channels=32, min_size=SIZE, max_size=SIZE, **kwargs
    )


def tiny_batch(arch: str) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Two 128x128 images with a thread-like, a square and a bar-like object; labels in the
    host's label space (1-based for the R-CNNs), masks for Mask R-CNN."""
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=gen) for _ in range(2)]
    boxes = [
        torch.tensor([[10.0, 8.0, 18.0, 120.0], [60.0, 60.0, 100.0, 96.0]]),
        torch.tensor([[20.0, 40.0, 120.0, 56.0]]),
    ]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    offset = 1 if arch in TWO_STAGE else 0
    targets = []
    for b, lab in zip(boxes, labels, strict=True):
        target = {"boxes": b, "labels": lab + offset}
        if arch == "maskrcnn":
            masks = torch.zeros(len(b), SIZE, SIZE, dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
                masks[k, y1:y2, x1:x2] = 1
            target["masks"] = masks
        targets.append(target)
    return images, targets


def clusters() -> tuple[Tensor, Tensor, Tensor]:
    """A hand-made case where greedy NMS and SinkhornNMS must agree: tight clusters of boxes
    (pairwise IoU > 0.8) far apart from each other, a lone box, and a box of another class on
    top of the first cluster.

    Returns:
        boxes (Tensor[N, 4]) xyxy inside a 128x128 image, scores (Tensor[N]) all distinct,
        labels (Tensor[N] int64) 0-based.
    """
    boxes = torch.tensor(
        [
            [10.0, 10.0, 40.0, 40.0],
            [11.0, 10.0, 41.0, 41.0],
            [9.0, 11.0, 39.0, 40.0],
            [80.0, 80.0, 120.0, 112.0],
            [81.0, 79.0, 120.0, 111.0],
            [84.0, 8.0, 100.0, 60.0],
            [10.0, 11.0, 40.0, 40.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.65])
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 1])
    return boxes, scores, labels


def logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)
