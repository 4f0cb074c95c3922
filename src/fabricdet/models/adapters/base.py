"""What every adapted torchvision detector shares: the host, the NMS switch, the input checks
and the inference-time suppression step.

An adapter *wraps* its host rather than changing it: the host's parameters are the adapter's
(``adapter.host``; training one trains the other, as with DistributedDataParallel), and the
host itself still runs with torchvision's own NMS. So a model trained through SinkhornNMS can
be evaluated natively, and a natively trained one with SinkhornNMS, without copying weights.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from fabricdet.errors import FabricdetError
from fabricdet.models.adapters.options import AdapterOptions
from fabricdet.models.adapters.set_training import SetTerms
from fabricdet.ops import NMS_METHODS, batched_nms


class SinkhornAdapter(nn.Module):
    """Base of the adapters: torchvision's detection contract around a host detector.

    ``adapter(images, targets=None)``: ``images`` a list of ``Tensor[3, H, W]`` in [0, 1];
    training returns the host's losses plus the set-loss terms, eval returns one dict per image
    (``boxes`` Tensor[K, 4] xyxy in input pixels, ``labels`` Tensor[K] int64, ``scores``
    Tensor[K], and ``masks`` Tensor[K, 1, H, W] for Mask R-CNN), exactly as the host does.

    Args:
        host: the torchvision detector (its parameters are shared, not copied).
        options: see :class:`AdapterOptions`.
    """

    def __init__(self, host: nn.Module, options: AdapterOptions) -> None:
        super().__init__()
        self.host = host
        self.options = options
        self._nms_method = ""
        self.nms_method = options.nms_method

    @property
    def nms_method(self) -> str:
        """NMS used at inference (any of :data:`fabricdet.ops.NMS_METHODS`; ``"greedy"`` is the
        host's own). ``fabricdet.engine`` switches it for evaluation."""
        return self._nms_method

    @nms_method.setter
    def nms_method(self, method: str) -> None:
        if method not in NMS_METHODS:
            raise FabricdetError(f"unknown NMS method {method!r}; choose one of {NMS_METHODS}")
        self._nms_method = method
        self.options = replace(self.options, nms_method=method)

    def set_epoch_progress(self, progress: float) -> None:
        """Anneal the training solves' eps and ramp the set loss in (``progress`` in [0, 1],
        the fraction of training done; the fabricdet training loop calls this every step)."""
        for module in self.modules():
            if isinstance(module, SetTerms):
                module.set_progress(progress)

    def _features(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None
    ) -> tuple[
        ImageList, list[dict[str, Tensor]] | None, list[tuple[int, int]], OrderedDict[str, Tensor]
    ]:
        """:meth:`_prepare`, then the host's backbone as named feature maps (a bare tensor, as a
        single-level backbone returns, becomes level ``"0"``)."""
        image_list, targets, original_sizes = self._prepare(images, targets)
        features = self.host.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        return image_list, targets, original_sizes, features

    def _prepare(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None, list[tuple[int, int]]]:
        """The host's transform (normalise, resize, batch) with the checks torchvision makes.

        Returns:
            the batched images, the targets in their resized pixels (copies), and each input
            image's ``(H, W)`` to map detections back.
        """
        if self.training and targets is None:
            raise ValueError("training mode needs targets")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets = self.host.transform(images, targets)
        for k, target in enumerate(targets or []):
            boxes = target["boxes"]
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"target {k}: boxes must be [N, 4], got {tuple(boxes.shape)}")
            bad = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
            if bad.any():
                box = boxes[bad][0].tolist()
                raise ValueError(
                    f"target {k}: every box needs x2 > x1 and y2 > y1, got {box}; drop or "
                    "widen degenerate boxes before training"
                )
        return image_list, targets, original_sizes

    def _suppress(
        self, boxes: Tensor, scores: Tensor, idxs: Tensor, host_threshold: float, method: str
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One image's duplicate removal with ``method``, where the host calls
        ``torchvision.ops.batched_nms(boxes, scores, idxs, host_threshold)``.

        Args:
            boxes (Tensor[N, 4]), scores (Tensor[N]), idxs (Tensor[N] int64): the host's
                candidates; ``idxs`` groups the boxes that may suppress each other.

        Returns:
            keep (Tensor[K] int64) sorted by decreasing output score, the output boxes
            (Tensor[K, 4]; fused by SinkhornNMS and WBF unless ``fuse_boxes=False``) and the
            output scores (Tensor[K]).
        """
        options: dict[str, Any] = {}
        threshold = host_threshold
        if method == "sinkhorn":
            options = self.options.solver_options()
            threshold = self.options.threshold(host_threshold)
        res = batched_nms(
            boxes, scores, idxs, threshold, method=method, return_result=True, **options
        )
        out_boxes = res.boxes if self.options.fuse_boxes else boxes[res.keep]
        return res.keep, out_boxes, res.scores

    @staticmethod
    def _check_targets_given(targets: list[dict[str, Tensor]] | None) -> list[dict[str, Tensor]]:
        if targets is None:
            raise ValueError("training mode needs targets")
        return targets
