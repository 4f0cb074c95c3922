"""torchvision detectors with SinkhornNMS in place of their NMS, trainable through it.

>>> from torchvision.models.detection import fcos_resnet50_fpn
>>> model = with_sinkhorn_nms(fcos_resnet50_fpn(weights=None, weights_backbone=None))
>>> model.eval(); detections = model(images)       # SinkhornNMS hard decode
>>> model.train(); losses = model(images, targets)   # host losses + set_keep, set_box

- :func:`with_sinkhorn_nms`: wraps an FCOS, RetinaNet, Faster R-CNN or Mask R-CNN;
- :class:`AdapterOptions`: the solver, where it sits in a two-stage model, the set loss;
- :func:`tiny_torchvision_detector`: those four detectors, small and CPU-trainable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet

from fabricdet.models.adapters.base import SinkhornAdapter
from fabricdet.models.adapters.one_stage import OneStageAdapter
from fabricdet.models.adapters.options import STAGES, AdapterOptions
from fabricdet.models.adapters.tiny_hosts import ARCHS, tiny_torchvision_detector
from fabricdet.models.adapters.two_stage import TwoStageAdapter


def with_sinkhorn_nms(
    model: nn.Module, options: AdapterOptions | None = None, **overrides: Any
) -> SinkhornAdapter:
    """``model`` with SinkhornNMS in place of its NMS (and a set loss through it in training).

    The result wraps ``model`` and shares its parameters; ``model`` itself is not modified and
    keeps torchvision's NMS (``result.host`` is ``model``).

    Args:
        model: a torchvision ``FCOS``, ``RetinaNet``, ``FasterRCNN`` or ``MaskRCNN``.
        options: adapter options; default :class:`AdapterOptions`.
        **overrides: fields of :class:`AdapterOptions` to change (``eps=0.02``,
            ``stage="both"``, ``train_through=False``, ...).

    Raises:
        TypeError: another kind of model (SSD, Keypoint R-CNN, ...).
        ValueError: an invalid option.
    """
    opts = replace(options or AdapterOptions(), **overrides)
    if isinstance(model, (FCOS, RetinaNet)):
        return OneStageAdapter(model, opts)
    if isinstance(model, FasterRCNN):
        return TwoStageAdapter(model, opts)
    raise TypeError(
        f"with_sinkhorn_nms supports torchvision FCOS, RetinaNet, FasterRCNN and MaskRCNN, "
        f"got {type(model).__name__}"
    )


__all__ = [
    "ARCHS",
    "STAGES",
    "AdapterOptions",
    "OneStageAdapter",
    "SinkhornAdapter",
    "TwoStageAdapter",
    "tiny_torchvision_detector",
    "with_sinkhorn_nms",
]
