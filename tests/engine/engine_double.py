"""A tiny detector obeying the engine's model contract, for testing the engine on its own.

Not a real detector: one patchify convolution (stride 8) and a 1x1 head predicting, per cell,
class logits and log-distances to the box sides (FCOS-like). It trains in milliseconds, uses
dropout (so resume tests see the torch random state restored) and, like the real detector,
has ``nms_method`` and ``set_epoch_progress``. ``build_double_with_masks`` also returns box-
shaped mask probabilities in eval mode.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricdet.models.config import ModelConfig
from fabricdet.ops import batched_nms

STRIDE = 8


class DoubleDetector(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int, with_masks: bool = False) -> None:
        super().__init__()
        c = cfg.fpn_channels
        self.num_classes = num_classes
        self.with_masks = with_masks
        self.stem = nn.Conv2d(3, c, STRIDE, stride=STRIDE)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Conv2d(c, num_classes + 4, 1)
        nn.init.constant_(self.head.bias[:num_classes], -2.0)
        self.nms_method = cfg.nms
        self.score_thresh = cfg.score_thresh
        self.detections_per_img = cfg.detections_per_img
        self.progress = 0.0

    def set_epoch_progress(self, progress: float) -> None:
        self.progress = progress

    def _dense(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """logits (Tensor[HW, C]), ltrb (Tensor[HW, 4], pixels), centres (Tensor[HW, 2])."""
        out = self.head(self.drop(F.relu(self.stem(image[None]))))[0]
        h, w = out.shape[-2:]
        out = out.flatten(1).T
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = torch.stack([xs.flatten(), ys.flatten()], 1).float().add(0.5).mul(STRIDE)
        ltrb = out[:, self.num_classes :].clamp(max=8).exp() * STRIDE
        return out[:, : self.num_classes], ltrb, centres.to(out.device)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            assert targets is not None
            cls_loss = box_loss = images[0].new_zeros(())
            for image, t in zip(images, targets, strict=True):
                logits, ltrb, centres = self._dense(image)
                cls_t = torch.zeros_like(logits)
                boxes = t["boxes"]
                if len(boxes):
                    inside = (
                        (centres[:, None, 0] >= boxes[None, :, 0] - STRIDE / 2)
                        & (centres[:, None, 0] <= boxes[None, :, 2] + STRIDE / 2)
                        & (centres[:, None, 1] >= boxes[None, :, 1] - STRIDE / 2)
                        & (centres[:, None, 1] <= boxes[None, :, 3] + STRIDE / 2)
                    )
                    pos, gt = inside.nonzero(as_tuple=True)
                    cls_t[pos, t["labels"][gt]] = 1.0
                    b = boxes[gt]
                    c = centres[pos]
                    target = torch.stack(
                        [
                            c[:, 0] - b[:, 0],
                            c[:, 1] - b[:, 1],
                            b[:, 2] - c[:, 0],
                            b[:, 3] - c[:, 1],
                        ],
                        1,
                    ).clamp(min=1.0)
                    box_loss = box_loss + F.l1_loss(ltrb[pos].log(), target.log())
                cls_loss = cls_loss + F.binary_cross_entropy_with_logits(logits, cls_t)
            n = len(images)
            return {"cls": cls_loss / n, "box": box_loss / n}
        return [self._detect(im) for im in images]

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        logits, ltrb, centres = self._dense(image)
        scores, labels = logits.sigmoid().max(1)
        boxes = torch.cat([centres - ltrb[:, :2], centres + ltrb[:, 2:]], 1)
        h, w = image.shape[-2:]
        boxes = boxes.clamp(min=0).minimum(torch.tensor([w, h, w, h], device=boxes.device))
        keep = (scores > self.score_thresh).nonzero().flatten()
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, 0.5, method=self.nms_method)
        keep = keep[: self.detections_per_img]
        out = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
        if self.with_masks:
            masks = torch.zeros((len(keep), 1, h, w))
            for k, (x1, y1, x2, y2) in enumerate(out["boxes"].round().long().tolist()):
                masks[k, 0, y1:y2, x1:x2] = 0.9
            out["masks"] = masks
        return out


def build_double(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return DoubleDetector(cfg, num_classes)


def build_double_with_masks(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return DoubleDetector(cfg, num_classes, with_masks=True)


class SlowDoubleDetector(DoubleDetector):
    """The test double, slowed down in training so a test can kill it mid-run."""

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            time.sleep(0.3)
        return super().forward(images, targets)


def build_slow_double(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return SlowDoubleDetector(cfg, num_classes)


class OracleDetector(nn.Module):
    """Finds the filled rectangles of ``engine_testdata.painted_dataset`` (colour channel =
    label) with connected components: a perfect detector, so evaluation must score 1.0 once
    its outputs are mapped back to original pixels and category ids. Predicts masks too."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.nms_method = cfg.nms

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]]:
        outs = []
        for image in images:
            boxes, labels, masks = [], [], []
            for label in range(self.num_classes):
                on = (image[label] > 0.5).numpy().astype(np.uint8)
                n, comp, stats, _ = cv2.connectedComponentsWithStats(on)
                for k in range(1, n):
                    x, y, w, h = stats[k, :4]
                    boxes.append([x, y, x + w, y + h])
                    labels.append(label)
                    masks.append(torch.from_numpy(comp == k).float()[None])
            h, w = image.shape[-2:]
            outs.append(
                {
                    "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.full((len(boxes),), 0.9),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                    "masks": torch.stack(masks) if masks else torch.zeros((0, 1, h, w)),
                }
            )
        return outs


def build_oracle(cfg: ModelConfig, num_classes: int) -> nn.Module:
    return OracleDetector(cfg, num_classes)
