"""FPN neck and the dense anchor-free head (class, box distances, IoU quality, embeddings).

The head is shared across pyramid levels. Classification is trained with focal loss towards 1
on positives (fast to converge from scratch), a quality branch towards the IoU of the predicted
box; a candidate's score is ``sqrt(p_class * p_quality)``, so one number ranks candidates by
both class and localisation quality. A fourth output predicts appearance embeddings for
SinkhornNMS.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HeadOutput(NamedTuple):
    """Dense predictions over all locations ``A`` of all levels, concatenated.

    Attributes:
        cls_logits (Tensor[B, A, C]): class logits.
        quality_logits (Tensor[B, A]): IoU-quality logits.
        distances (Tensor[B, A, 4]): left, top, right, bottom distances in pixels from the
            location to its box's sides (signed: the box need not contain its location).
        embeddings (Tensor[B, A, D]): appearance embeddings (D may be 0).
        points (Tensor[A, 2]): location centres (x, y) in input pixels.
        strides (Tensor[A]): stride of each location's level.
    """

    cls_logits: Tensor
    quality_logits: Tensor
    distances: Tensor
    embeddings: Tensor
    points: Tensor
    strides: Tensor


def _separable(channels: int) -> list[nn.Module]:
    """Depthwise 3x3 + pointwise 1x1 + GroupNorm + SiLU: ~8x cheaper than a dense 3x3 at the
    stride-4 level, which holds most of the locations."""
    return [
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.GroupNorm(8 if channels % 8 == 0 else 1, channels),
        nn.SiLU(inplace=True),
    ]


def _tower(channels: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[layer for _ in range(depth) for layer in _separable(channels)])


class Neck(nn.Module):
    """Feature pyramid (FPN top-down path) over the chosen strides of a backbone's features,
    with separable output convs."""

    def __init__(self, in_channels: dict[str, int], strides: tuple[int, ...], out: int) -> None:
        super().__init__()
        self.keys = [str(s) for s in strides]
        missing = [k for k in self.keys if k not in in_channels]
        if missing:
            raise ValueError(f"backbone has no stride {missing}; it offers {list(in_channels)}")
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels[k], out, 1) for k in self.keys)
        self.output = nn.ModuleList(nn.Sequential(*_separable(out)) for _ in self.keys)

    def forward(self, feats: OrderedDict[str, Tensor]) -> list[Tensor]:
        laterals = [conv(feats[k]) for conv, k in zip(self.lateral, self.keys, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            up = F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
            laterals[i] = laterals[i] + up
        return [conv(x) for conv, x in zip(self.output, laterals, strict=True)]


class DenseHead(nn.Module):
    """Shared conv towers and two 3x3 prediction convs: classes on the class tower; box,
    quality and embedding together on the regression tower (one conv with ``5 + D`` outputs:
    at the stride-4 level, which holds most locations, a conv with few output channels costs
    nearly as much as one with many, so three separate ones cost ~2.5x one fused).

    Args:
        channels: input (FPN) channels.
        num_classes: foreground classes C.
        strides: strides of the levels it runs on (one learnable scale per level).
        depth: conv layers per tower.
        embed_dim: embedding size D (0: no embedding branch).
    """

    def __init__(
        self, channels: int, num_classes: int, strides: tuple[int, ...], depth: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.strides = strides
        self.cls_tower = _tower(channels, depth)
        self.reg_tower = _tower(channels, depth)
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        # Output channels: box encoding (4), quality (1), embedding (D).
        self.reg = nn.Conv2d(channels, 5 + embed_dim, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(strides)))
        with torch.no_grad():
            nn.init.normal_(self.cls.weight, std=0.01)
            nn.init.normal_(self.reg.weight[:5], std=0.01)  # embeddings keep the default init
            # Start with 1% foreground probability so the focal loss does not explode
            # (RetinaNet), and with boxes 2 strides wide.
            nn.init.constant_(self.cls.bias, -math.log(99.0))
            self.reg.bias[:5] = torch.tensor([0.0, 0.0, math.log(2.0), math.log(2.0), 0.0])

    def forward(self, feats: list[Tensor]) -> HeadOutput:
        cls_out, qual_out, dist_out, emb_out, points, strides = [], [], [], [], [], []
        for level, (x, stride) in enumerate(zip(feats, self.strides, strict=True)):
            _b, _, h, w = x.shape
            cls_out.append(self.cls(self.cls_tower(x)).flatten(2).transpose(1, 2))
            reg = self.reg(self.reg_tower(x))
            dist = box_distances(reg[:, :4], self.scales[level], stride)
            dist_out.append(dist.flatten(2).transpose(1, 2))
            qual_out.append(reg[:, 4].flatten(1))
            emb_out.append(reg[:, 5:].flatten(2).transpose(1, 2))
            ys, xs = torch.meshgrid(
                torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
            )
            pts = torch.stack([xs, ys], -1).reshape(-1, 2).to(x.dtype)
            points.append((pts + 0.5) * stride)
            strides.append(torch.full((h * w,), float(stride), device=x.device, dtype=x.dtype))
        return HeadOutput(
            torch.cat(cls_out, 1),
            torch.cat(qual_out, 1),
            torch.cat(dist_out, 1),
            torch.cat(emb_out, 1),
            torch.cat(points),
            torch.cat(strides),
        )


def box_distances(raw: Tensor, scale: Tensor, stride: int) -> Tensor:
    """Signed ``ltrb`` distances from a location to its box's sides, ``Tensor[B, 4, H, W]``.

    The head predicts the box centre's offset from the location (in strides) and the log of
    its size (in strides), as YOLOX does, rather than FCOS' positive distances: a location
    just outside a 2 px thread (every location of a coarse level is) must predict a box that
    does not contain it, which positive distances cannot express; forced to, their
    regression fights the assignment and drifts to degenerate boxes. ``exp`` spans hair-thin
    (a pixel) to whole-image boxes; the clamp only guards the exponential's range.
    """
    centre = raw[:, :2] * stride
    half = torch.exp((raw[:, 2:] * scale).clamp(max=12.0)) * (stride / 2)
    return torch.cat([half - centre, half + centre], 1)


def candidate_scores(out: HeadOutput) -> Tensor:
    """Score of every (location, class): ``sqrt(p_class * p_quality)``. ``Tensor[B, A, C]``."""
    return (out.cls_logits.sigmoid() * out.quality_logits.sigmoid().unsqueeze(-1)).sqrt()


def decode_boxes(points: Tensor, distances: Tensor) -> Tensor:
    """Boxes from location centres and ltrb distances.

    Args:
        points (Tensor[..., 2]), distances (Tensor[..., 4]).

    Returns:
        boxes (Tensor[..., 4]) xyxy.
    """
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], -1)
