"""Faster R-CNN and Mask R-CNN with SinkhornNMS.

A two-stage detector removes duplicates twice: the RPN keeps its best proposals per feature
level (``batched_nms`` by level at ``rpn.nms_thresh``, 0.7), and the box head keeps its best
detections per class (``batched_nms`` by class at ``roi_heads.nms_thresh``, 0.5). ``stage``
chooses where SinkhornNMS replaces torchvision's NMS, and where the set loss trains through it:

- ``"box"`` (default): the final detections, the duplicates a user sees. The set loss scores
  the box head's class-specific boxes on the RPN's best ``set_proposals`` proposals; its
  gradients reach the box classifier and regressor (torchvision detaches proposals, so not
  the RPN).
- ``"rpn"``: the proposals, class-agnostic; the set loss reaches the RPN head. Proposals are
  meant to over-cover objects for the box head to sort out, so a one-to-one loss there works
  against their purpose. And the RPN's NMS also picks the training proposals, so the sparse
  solve on thousands of them runs at every training step (about 4x the step time of the box
  stage on the tiny hosts), not only at inference.
- ``"both"``.

``benchmarks/adapters.py --stages`` measures the three on the synthetic benchmark (README).
The adapter runs the host's own transform, backbone, RPN head and anchors, RoI heads and mask
branch, and with ``nms_method="greedy"`` reproduces the host exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from fabricdet.models.adapters.base import SinkhornAdapter
from fabricdet.models.adapters.options import AdapterOptions
from fabricdet.models.adapters.set_training import SetTerms, pad_stack, top_candidates


class TwoStageAdapter(SinkhornAdapter):
    """A torchvision Faster R-CNN or Mask R-CNN whose NMS is SinkhornNMS at ``options.stage``.

    Training returns the host's losses (``loss_objectness``, ``loss_rpn_box_reg``,
    ``loss_classifier``, ``loss_box_reg``, and ``loss_mask`` for Mask R-CNN) plus, when
    ``options.train_through``, ``set_keep`` and ``set_box`` (box stage) and/or
    ``rpn_set_keep`` and ``rpn_set_box`` (RPN stage).
    """

    host: FasterRCNN

    def __init__(self, host: FasterRCNN, options: AdapterOptions) -> None:
        if not isinstance(host, FasterRCNN):
            raise TypeError(f"expected a torchvision Faster/Mask R-CNN, got {type(host).__name__}")
        if host.roi_heads.keypoint_predictor is not None:
            raise TypeError("Keypoint R-CNN is not supported (its keypoint branch is not adapted)")
        super().__init__(host, options)
        self.rpn_terms = SetTerms(options, options.threshold(host.rpn.nms_thresh), "rpn_")
        self.box_terms = SetTerms(options, options.threshold(host.roi_heads.nms_thresh))

    def _at(self, place: str) -> bool:
        return self.options.stage in (place, "both")

    def _method(self, place: str) -> str:
        """NMS method at ``place`` (``"rpn"`` or ``"box"``): the host's own elsewhere."""
        return self.nms_method if self._at(place) else "greedy"

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        host = self.host
        image_list, targets, original_sizes, features = self._features(images, targets)
        proposals, losses = self._rpn(image_list, features, targets)
        sizes = image_list.image_sizes
        if self.training:
            targets = self._check_targets_given(targets)
            _, roi_losses = host.roi_heads(features, proposals, sizes, targets)
            losses.update(roi_losses)
            if self.options.train_through and self._at("box"):
                losses.update(self._box_set_loss(features, proposals, sizes, targets))
            return losses
        detections = self._detect(features, proposals, sizes)
        return host.transform.postprocess(detections, sizes, original_sizes)

    # -- RPN -----------------------------------------------------------------------------
    def _rpn(
        self,
        image_list: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The host RPN's forward with its NMS by ``_method("rpn")`` and, in training, the
        set loss on its proposals. Returns per-image proposals (Tensor[P_b, 4]) and losses."""
        rpn = self.host.rpn
        feature_list = list(features.values())
        objectness, deltas = rpn.head(feature_list)
        anchors = rpn.anchor_generator(image_list, feature_list)
        num_images = len(anchors)
        per_level = [o[0].numel() for o in objectness]  # anchors per level of one image
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)  # [B*A, 1], [B*A, 4]
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)
        boxes = self.filter_proposals(proposals, objectness, image_list.image_sizes, per_level)
        losses: dict[str, Tensor] = {}
        if not self.training:
            return boxes, losses
        targets = self._check_targets_given(targets)
        labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched, anchors)
        loss_objectness, loss_box = rpn.compute_loss(objectness, deltas, labels, regression_targets)
        losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        if self.options.train_through and self._at("rpn"):
            # the same decode without the detach, so the set loss reaches the RPN head
            live = rpn.box_coder.decode(deltas, anchors).view(num_images, -1, 4)
            scores = torch.sigmoid(objectness.view(num_images, -1, 1))
            cand = top_candidates(scores, live, image_list.image_sizes, self.options.set_topk)
            agnostic = [
                {"boxes": t["boxes"], "labels": torch.zeros_like(t["labels"])} for t in targets
            ]
            losses.update(self.rpn_terms(cand, agnostic))
        return boxes, losses

    @torch.no_grad()
    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> list[Tensor]:
        """The host RPN's ``filter_proposals`` (same arguments: ``proposals`` Tensor[B, A, 4],
        ``objectness`` Tensor[B*A, 1]) with the NMS by ``_method("rpn")``.

        Returns:
            per image the proposals (Tensor[P_b, 4]) by decreasing objectness.
        """
        rpn = self.host.rpn
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [torch.full((n,), k, dtype=torch.int64) for k, n in enumerate(num_anchors_per_level)]
        ).to(proposals.device)
        levels = levels.reshape(1, -1).expand_as(objectness)
        top = rpn._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        objectness, levels, proposals = (
            objectness[rows, top],
            levels[rows, top],
            proposals[rows, top],
        )
        method = self._method("rpn")
        kept = []
        for boxes, scores, level, shape in zip(
            proposals, torch.sigmoid(objectness), levels, image_shapes, strict=True
        ):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
            keep = keep[scores[keep] >= rpn.score_thresh]
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep, out_boxes, _ = self._suppress(boxes, scores, level, rpn.nms_thresh, method)
            kept.append(out_boxes[: rpn.post_nms_top_n()])
        return kept

    # -- box head ------------------------------------------------------------------------
    def _box_outputs(
        self, features: dict[str, Tensor], proposals: list[Tensor], sizes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """``class_logits`` (Tensor[sum P_b, C+1]) and ``box_regression`` (Tensor[sum P_b,
        (C+1)*4]) of the host's box head on the proposals."""
        roi = self.host.roi_heads
        box_features = roi.box_head(roi.box_roi_pool(features, proposals, sizes))
        return roi.box_predictor(box_features)

    def _box_set_loss(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """Set loss through SinkhornNMS on the box head's detections of the best proposals.

        The host trains its box head on sampled proposals with the ground-truth boxes added;
        SinkhornNMS must see what inference sees instead: the RPN's best proposals, re-scored.
        """
        roi = self.host.roi_heads
        best = [p[: self.options.set_proposals].detach() for p in proposals]
        class_logits, box_regression = self._box_outputs(features, best, sizes)
        boxes = roi.box_coder.decode(box_regression, best)  # [sum P_b, C+1, 4]
        scores = F.softmax(class_logits, -1)
        counts = [len(p) for p in best]
        # drop the background column; labels are then 0-based, the host's are 1-based
        padded_scores, valid = pad_stack([s[:, 1:] for s in scores.split(counts)])
        padded_boxes, _ = pad_stack([b[:, 1:] for b in boxes.split(counts)])
        cand = top_candidates(padded_scores, padded_boxes, sizes, self.options.set_topk, valid)
        cand = cand._replace(labels=cand.labels + 1)
        return self.box_terms(cand, targets)

    @torch.no_grad()
    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """The host RoI heads' ``postprocess_detections`` (same arguments and results) with
        the NMS by ``_method("box")``."""
        roi = self.host.roi_heads
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        pred_boxes = roi.box_coder.decode(box_regression, proposals).split(counts)
        pred_scores = F.softmax(class_logits, -1).split(counts)
        method = self._method("box")
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, shape in zip(pred_boxes, pred_scores, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            # every class but the background is a candidate of its own
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > roi.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep, boxes, scores = self._suppress(boxes, scores, labels, roi.nms_thresh, method)
            top = slice(0, roi.detections_per_img)
            all_boxes.append(boxes[top])
            all_scores.append(scores[top])
            all_labels.append(labels[keep][top])
        return all_boxes, all_scores, all_labels

    @torch.no_grad()
    def _detect(
        self, features: dict[str, Tensor], proposals: list[Tensor], sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """The host RoI heads' inference: boxes, then masks on the kept boxes (Mask R-CNN)."""
        roi = self.host.roi_heads
        class_logits, box_regression = self._box_outputs(features, proposals, sizes)
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, sizes
        )
        result = [
            {"boxes": b, "labels": lab, "scores": s}
            for b, s, lab in zip(boxes, scores, labels, strict=True)
        ]
        if roi.has_mask():
            mask_features = roi.mask_head(roi.mask_roi_pool(features, boxes, sizes))
            probs = maskrcnn_inference(roi.mask_predictor(mask_features), labels)
            for r, prob in zip(result, probs, strict=True):
                r["masks"] = prob
        return result
