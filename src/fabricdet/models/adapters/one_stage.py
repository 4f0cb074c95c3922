"""FCOS and RetinaNet with SinkhornNMS.

Both are dense one-stage detectors whose NMS is the last step of ``postprocess_detections``:
per feature level the candidates above ``score_thresh`` (at most ``topk_candidates``) are
decoded and clipped, then ``batched_nms`` by class keeps at most ``detections_per_img``. The
adapter runs the host's own transform, backbone, head and anchors, and replaces that last step
by :meth:`SinkhornAdapter._suppress` (``nms_method="greedy"`` reproduces the host exactly). In
training it adds the set loss through SinkhornNMS on the ``set_topk`` best (anchor, class)
pairs of every image to the host's own losses.

The two hosts differ only in their scores (RetinaNet: ``sigmoid(cls)``; FCOS: the geometric
mean of the class and centre-ness probabilities), their box coder and the arguments of their
``compute_loss``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.ops import boxes as box_ops

from fabricdet.models.adapters.base import SinkhornAdapter
from fabricdet.models.adapters.options import AdapterOptions
from fabricdet.models.adapters.set_training import SetTerms, top_candidates


class OneStageAdapter(SinkhornAdapter):
    """A torchvision FCOS or RetinaNet whose NMS is SinkhornNMS (see the module docstring).

    Training returns the host's losses (FCOS: ``classification``, ``bbox_regression``,
    ``bbox_ctrness``; RetinaNet: ``classification``, ``bbox_regression``) plus ``set_keep``
    and ``set_box`` when ``options.train_through``.
    """

    host: FCOS | RetinaNet

    def __init__(self, host: FCOS | RetinaNet, options: AdapterOptions) -> None:
        if not isinstance(host, (FCOS, RetinaNet)):
            raise TypeError(f"expected a torchvision FCOS or RetinaNet, got {type(host).__name__}")
        super().__init__(host, options)
        self.set_terms = SetTerms(options, options.threshold(host.nms_thresh))

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        host = self.host
        image_list, targets, original_sizes, features = self._features(images, targets)
        feature_list = list(features.values())
        head_outputs = host.head(feature_list)
        anchors = host.anchor_generator(image_list, feature_list)
        locations = [f.shape[-2] * f.shape[-1] for f in feature_list]

        if self.training:
            targets = self._check_targets_given(targets)
            if isinstance(host, FCOS):
                losses = host.compute_loss(targets, head_outputs, anchors, locations)
            else:
                losses = host.compute_loss(targets, head_outputs, anchors)
            if self.options.train_through:
                cand = top_candidates(
                    self.scores(head_outputs),
                    self.decode(head_outputs["bbox_regression"], torch.stack(anchors)),
                    image_list.image_sizes,
                    self.options.set_topk,
                )
                losses.update(self.set_terms(cand, targets))
            return losses

        # RetinaNet has several anchors per location: split the flat anchor axis per level.
        per_location = head_outputs["cls_logits"].shape[1] // sum(locations)
        sizes = [n * per_location for n in locations]
        split_outputs = {k: list(v.split(sizes, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(sizes)) for a in anchors]
        detections = self.postprocess(split_outputs, split_anchors, image_list.image_sizes)
        return host.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def scores(self, head_outputs: dict[str, Tensor]) -> Tensor:
        """Class probabilities as the host ranks them.

        Args:
            head_outputs: ``cls_logits`` (Tensor[..., A, C]) and, for FCOS, ``bbox_ctrness``
                (Tensor[..., A, 1]).

        Returns:
            Tensor[..., A, C].
        """
        prob = torch.sigmoid(head_outputs["cls_logits"])
        if isinstance(self.host, FCOS):
            prob = torch.sqrt(prob * torch.sigmoid(head_outputs["bbox_ctrness"]))
        return prob

    def decode(self, regression: Tensor, anchors: Tensor) -> Tensor:
        """xyxy boxes from the host's box encoding (differentiable).

        Args:
            regression (Tensor[..., 4]), anchors (Tensor[..., 4]): same leading shape.

        Returns:
            Tensor[..., 4].
        """
        if isinstance(self.host, FCOS):
            return self.host.box_coder.decode(regression, anchors)
        flat = self.host.box_coder.decode_single(regression.reshape(-1, 4), anchors.reshape(-1, 4))
        return flat.reshape(regression.shape)

    @torch.no_grad()
    def postprocess(
        self,
        head_outputs: dict[str, list[Tensor]],
        anchors: list[list[Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """The host's ``postprocess_detections`` (same arguments: per-level head outputs
        ``Tensor[B, A_l, ...]``, per-image per-level anchors ``Tensor[A_l, 4]``) with the NMS
        step by ``nms_method``.

        Returns:
            per image ``boxes`` (Tensor[K, 4]), ``scores`` (Tensor[K]), ``labels``
            (Tensor[K] int64), K <= ``detections_per_img``, sorted by decreasing score.
        """
        host = self.host
        detections = []
        for index, image_shape in enumerate(image_shapes):
            image_boxes, image_scores, image_labels = [], [], []
            for level, anchors_per_level in enumerate(anchors[index]):
                level_outputs = {k: v[level][index] for k, v in head_outputs.items()}
                scores = self.scores(level_outputs)  # [A_l, C]
                num_classes = scores.shape[-1]
                scores = scores.flatten()
                candidates = torch.where(scores > host.score_thresh)[0]
                top = scores[candidates].topk(min(len(candidates), host.topk_candidates))
                flat_index = candidates[top.indices]
                anchor_index = torch.div(flat_index, num_classes, rounding_mode="floor")
                boxes = self.decode(
                    level_outputs["bbox_regression"][anchor_index], anchors_per_level[anchor_index]
                )
                image_boxes.append(box_ops.clip_boxes_to_image(boxes, image_shape))
                image_scores.append(top.values)
                image_labels.append(flat_index % num_classes)
            boxes, scores = torch.cat(image_boxes), torch.cat(image_scores)
            labels = torch.cat(image_labels)
            keep, boxes, scores = self._suppress(
                boxes, scores, labels, host.nms_thresh, self.nms_method
            )
            top_k = slice(0, host.detections_per_img)
            detections.append(
                {"boxes": boxes[top_k], "scores": scores[top_k], "labels": labels[keep][top_k]}
            )
        return detections
