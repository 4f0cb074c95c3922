"""A second look at each candidate box: its IoU with the object it covers, from inside the box.

The dense head predicts a location's box and that box's IoU quality from the features at the
location, which do not see where the box's edges fall; on the trained detectors the NMS keeps
boxes that reach IoU 0.75 on a third as many objects as the candidates do
(docs/experiment-log.md, "Where any NMS could still gain"): the scores do not rank an
object's duplicates by placement. This head reads features pooled over each candidate box
grown by a margin, so it sees the defect's ends and edges against the box's, and predicts the
box's IoU with its object (IoU-Net's localisation confidence). At inference it replaces the
dense quality in the candidates' scores before any NMS: ``sqrt(p_class * q_box)``.

It trains on the candidates the NMS sees (the top-scoring ones) plus jittered copies of the
objects' boxes, which keep well-placed boxes in its training set before the dense head makes
any. Its input features are detached, so its loss changes no weight of the detector and one
checkpoint is evaluated with and without the rescoring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

#: Jittered copies of each object's box per training image, and their offsets' scale (a
#: fraction of the box's size per side, uniform): IoUs from about 0.3 to 1.
JITTER_COPIES = 8
JITTER_SCALE = 0.3


class BoxQualityHead(nn.Module):
    """IoU of each box with its object, from features pooled over the box and its margin.

    It runs on every candidate (up to ``topk_candidates``, 1000), so it is kept small: the
    feature map is reduced by a 1x1 convolution before the pooling (which then moves a
    quarter of the data) and each box costs two fully connected layers, about 0.1 MFLOP.

    Args:
        channels: channels of the feature map read.
        stride: its stride (the finest FPN level: thin threads are a pixel or two wide).
        pool: side of the pooled grid.
        reduced: channels after the 1x1 reduction.
        hidden: width of the fully connected layer.
        context: the pooled region is the box grown by this fraction of its size per side,
            and by at least one stride, so that the box's edges are inside it.
    """

    def __init__(
        self,
        channels: int,
        stride: int,
        pool: int = 7,
        reduced: int = 16,
        hidden: int = 128,
        context: float = 0.25,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.pool = pool
        self.context = context
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, reduced, 1), nn.GroupNorm(math.gcd(8, reduced), reduced), nn.SiLU()
        )
        # + 4: the box's log width and height in strides and its share of the pooled region
        self.fc = nn.Sequential(
            nn.Linear(reduced * pool * pool + 4, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )

    def regions(self, boxes: Tensor) -> Tensor:
        """The pooled region of each box. ``boxes (Tensor[N, 4])`` xyxy -> ``Tensor[N, 4]``."""
        size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
        grow = (self.context * size).clamp_min(float(self.stride))
        return torch.cat([boxes[:, :2] - grow, boxes[:, 2:] + grow], 1)

    def forward(self, feature: Tensor, boxes: Tensor, index: Tensor) -> Tensor:
        """IoU logits.

        Args:
            feature (Tensor[B, C, H/s, W/s]): the feature map at ``stride``.
            boxes (Tensor[N, 4]): xyxy in input pixels (gradients are not used).
            index (Tensor[N] int64): the image of each box.

        Returns:
            Tensor[N]: logits of the predicted IoU.
        """
        boxes = boxes.detach().to(feature.dtype)
        region = self.regions(boxes)
        rois = torch.cat([index.to(feature.dtype).unsqueeze(1), region], 1)
        reduced = self.reduce(feature)
        pooled = roi_align(reduced, rois, self.pool, 1.0 / self.stride, sampling_ratio=2)
        size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
        region_size = region[:, 2:] - region[:, :2]
        geometry = torch.cat([torch.log(size / self.stride), size / region_size], 1)
        return self.fc(torch.cat([pooled.flatten(1), geometry], 1)).squeeze(1)


def jittered_boxes(
    boxes: Tensor, copies: int = JITTER_COPIES, scale: float = JITTER_SCALE
) -> Tensor:
    """``copies`` random shifts of each box's sides by up to ``scale`` of its size.

    ``boxes (Tensor[G, 4])`` -> ``Tensor[G * copies, 4]`` (sides kept ordered).
    """
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2).repeat_interleave(copies, 0)
    noise = torch.rand(size.shape, dtype=boxes.dtype, device=boxes.device) * 2 - 1
    out = boxes.repeat_interleave(copies, 0) + noise * scale * size
    return torch.cat(
        [torch.minimum(out[:, :2], out[:, 2:]), torch.maximum(out[:, :2], out[:, 2:])], 1
    )


def box_quality_targets(
    boxes: Tensor, labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> Tensor:
    """Each box's best IoU with an object of its class (0 where none).

    ``boxes (Tensor[N, 4])``, ``labels (Tensor[N])``, ``gt_boxes (Tensor[G, 4])``,
    ``gt_labels (Tensor[G])`` -> ``Tensor[N]``.
    """
    if len(gt_boxes) == 0 or len(boxes) == 0:
        return boxes.new_zeros(len(boxes))
    iou = box_iou(boxes, gt_boxes.to(boxes.dtype))
    iou = iou * (labels.unsqueeze(1) == gt_labels.unsqueeze(0))
    return iou.max(1).values


def box_quality_loss(logits: Tensor, iou: Tensor) -> Tensor:
    """Mean BCE towards the IoU. ``logits, iou (Tensor[N])``; 0 (with a graph) when empty."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, iou)
