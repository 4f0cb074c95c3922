"""Small torchvision detectors built from scratch on fabricdet's CPU-friendly backbone.

torchvision's model builders put ResNet-50 and 256-channel heads behind every detector, far too
slow to train from scratch on a CPU. These builders keep torchvision's detector classes (FCOS,
RetinaNet, Faster R-CNN, Mask R-CNN: their losses, assignment, anchors and post-processing)
and swap in :class:`fabricdet.models.backbones.TinyBackbone` with a torchvision FPN and narrow
heads. Nothing is downloaded; weights start random.

Labels follow torchvision: FCOS and RetinaNet predict ``0 .. num_classes - 1``; the R-CNNs
reserve 0 for the background and predict ``1 .. num_classes``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from fabricdet.models.backbones import TinyBackbone

Arch = Literal["fcos", "retinanet", "fasterrcnn", "maskrcnn"]
ARCHS: tuple[str, ...] = ("fcos", "retinanet", "fasterrcnn", "maskrcnn")
#: Strides of the feature maps the detectors see (TinyBackbone's stages, through an FPN).
STRIDES: tuple[int, ...] = (8, 16, 32)


class TinyFPNBackbone(nn.Module):
    """TinyBackbone stages at :data:`STRIDES` through a torchvision FPN.

    ``forward(Tensor[B, 3, H, W]) -> OrderedDict`` of ``Tensor[B, channels, H/s, W/s]`` keyed
    ``"0", "1", ...`` (what torchvision's detectors and ``MultiScaleRoIAlign`` expect), with
    ``out_channels = channels``.
    """

    def __init__(self, width: int = 16, channels: int = 64) -> None:
        super().__init__()
        self.body = TinyBackbone(width)
        stage_channels = {"4": 2 * width, "8": 4 * width, "16": 8 * width, "32": 8 * width}
        self.keys = [str(s) for s in STRIDES]
        self.fpn = FeaturePyramidNetwork([stage_channels[k] for k in self.keys], channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body(x)
        named = OrderedDict((str(i), feats[k]) for i, k in enumerate(self.keys))
        return self.fpn(named)


def tiny_torchvision_detector(
    arch: Arch,
    num_classes: int,
    *,
    width: int = 16,
    channels: int = 64,
    min_size: int = 128,
    max_size: int = 320,
    **kwargs: Any,
) -> FCOS | RetinaNet | FasterRCNN | MaskRCNN:
    """A small, randomly initialised torchvision detector.

    Args:
        arch: ``"fcos"``, ``"retinanet"``, ``"fasterrcnn"`` or ``"maskrcnn"``.
        num_classes: foreground classes (the R-CNNs get one more output, the background).
        width: TinyBackbone's base width.
        channels: FPN and head channels (a multiple of 32: FCOS' head uses GroupNorm(32)).
        min_size, max_size: the host transform's resize (an image whose short side is
            ``min_size`` and long side at most ``max_size`` is not resized at all).
        **kwargs: passed to the torchvision class (thresholds, ``detections_per_img``, RPN
            sizes, ...). The R-CNNs default to 500 RPN proposals per level before and per
            image after the NMS and 128 sampled RoIs per image (torchvision: 2000 each in
            training, 1000 at test, and 512), sized for small images with a few objects.
    """
    if channels % 32:
        raise ValueError(f"channels must be a multiple of 32, got {channels}")
    backbone = TinyFPNBackbone(width, channels)
    levels = len(STRIDES)
    common: dict[str, Any] = {"min_size": min_size, "max_size": max_size, **kwargs}
    if arch == "fcos":
        anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * levels)
        head = FCOSHead(channels, 1, num_classes, num_convs=2)
        return FCOS(backbone, num_classes, anchor_generator=anchors, head=head, **common)
    # Anchors two strides wide, elongated both ways: fabric defects are threads and bars.
    ratios = ((0.25, 1.0, 4.0),) * levels
    sizes = tuple((4 * s,) for s in STRIDES)
    if arch == "retinanet":
        anchors = AnchorGenerator(sizes, ratios)
        head = RetinaNetHead(channels, 3, num_classes)
        return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **common)
    if arch not in ("fasterrcnn", "maskrcnn"):
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    names = [str(i) for i in range(levels)]
    representation = 4 * channels
    rcnn: dict[str, Any] = {
        # torchvision's sizes (2000 proposals per level, 512 sampled RoIs per image) are for
        # 800-pixel images with many objects; a 320x128 fabric image has about 2500 anchors and
        # a few defects, and the larger sizes mostly cost CPU time
        "rpn_pre_nms_top_n_train": 500,
        "rpn_pre_nms_top_n_test": 500,
        "rpn_post_nms_top_n_train": 500,
        "rpn_post_nms_top_n_test": 500,
        "box_batch_size_per_image": 128,
        "rpn_anchor_generator": AnchorGenerator(sizes, ratios),
        "rpn_head": RPNHead(channels, 3),
        "box_roi_pool": MultiScaleRoIAlign(names, 7, 2),
        "box_head": TwoMLPHead(channels * 7 * 7, representation),
        "box_predictor": FastRCNNPredictor(representation, num_classes + 1),
        **common,
    }
    if arch == "fasterrcnn":
        return FasterRCNN(backbone, None, **rcnn)
    return MaskRCNN(
        backbone,
        None,
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        mask_head=MaskRCNNHeads(channels, (channels, channels), 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1),
        **rcnn,
    )
