"""The fabric defect detector: backbone -> FPN -> dense head -> NMS (SinkhornNMS by default).

torchvision's contract: ``model(images, targets=None)`` with ``images`` a list of
``Tensor[3, H, W]`` in [0, 1] (any sizes; wide images stay wide, they are only padded to a
multiple of the largest stride). Training returns a dict of named losses: the dense one-to-many
losses (``cls``, ``quality``, ``box``, ``box_l1``, ``embed``) and the set loss on SinkhornNMS'
slots (``set_keep``, ``set_box``; ``set_rank`` with ``set_loss_rank_weight``), whose gradients
reach the seeds' scores and, through the slots' fused boxes (or the seeds' own,
``set_loss_fused_boxes=false``), the candidates' boxes; by default the matching itself is held
constant (``set_loss_plan_grad``: also through the plan, to scores and embeddings;
``set_loss_spatial_grad``: also to boxes by the plan's spatial term). Eval returns one dict
per image with ``boxes`` (Tensor[K, 4], xyxy in input pixels), ``scores`` (Tensor[K]) and
``labels`` (Tensor[K] int64, 0-based); the NMS method is the attribute ``nms_method`` and can
be changed at any time.

With ``ModelConfig.mask_head`` a mask head (:mod:`fabricdet.models.mask_head`) adds the mask
losses (``mask_proj``, ``mask_pair``, ``mask_self`` from boxes; ``mask_full`` when the targets
carry ``masks``) and, in eval, ``masks`` (Tensor[K, 1, H, W] float probabilities, torchvision's
convention) and ``mask_uncertainty`` (Tensor[K, 1, H, W] in [0, 1]) per image.

With ``ModelConfig.box_quality`` a box-quality head (:mod:`fabricdet.models.box_quality`)
adds the loss ``box_quality`` and, with ``box_quality_rescore``, rescores the candidates
before the NMS.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from fabricdet.errors import FabricdetError
from fabricdet.masks.roi import boxes_from_masks
from fabricdet.models.assigner import assign
from fabricdet.models.backbones import build_backbone, load_backbone_weights
from fabricdet.models.box_quality import (
    JITTER_COPIES,
    BoxQualityHead,
    box_quality_loss,
    box_quality_targets,
    jittered_boxes,
)
from fabricdet.models.candidates import Candidates, select_candidates
from fabricdet.models.config import ModelConfig
from fabricdet.models.head import DenseHead, HeadOutput, Neck, candidate_scores, decode_boxes
from fabricdet.models.losses import (
    box_l1_loss,
    box_loss,
    embedding_loss,
    focal_loss,
    neighbour_embedding_loss,
    quality_loss,
)
from fabricdet.models.mask_head import MaskHead
from fabricdet.models.set_loss import SetCriterion, plan_grad_scale
from fabricdet.models.texture_input import texture_channel
from fabricdet.ops import NMS_METHODS, SinkhornNMS, batched_nms
from fabricdet.ops.medoid import medoid_boxes

#: Input normalisation: woven fabric is mostly mid-grey, so images are centred on 0.5 and
#: padding (0 after normalising) reads as plain cloth. Exported graphs use the same constants.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


class FabricDetector(nn.Module):
    """Dense anchor-free detector trained end to end through SinkhornNMS.

    Args:
        cfg: model configuration.
        num_classes: number of foreground classes.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = build_backbone(cfg.backbone, cfg.width, 4 if cfg.texture_input else 3)
        if cfg.backbone_weights:
            load_backbone_weights(self.backbone, cfg.backbone_weights)
        strides = tuple(cfg.strides)
        self.neck = Neck(self.backbone.out_channels, strides, cfg.fpn_channels)
        self.head = DenseHead(cfg.fpn_channels, num_classes, strides, cfg.head_convs, cfg.embed_dim)
        sk = cfg.sinkhorn
        # The training losses' SinkhornNMS: on the edge list (the dense solve's plan, several
        # times cheaper; traced graphs get the dense solve) and without the hard decode, which
        # the losses do not use (inference runs batched_nms, export its own copy). Its slots'
        # boxes are the ones the set loss regresses: fused or the seeds' own, by the config,
        # whatever the inference outputs; its capacities too.
        self.sinkhorn = SinkhornNMS(
            iou_threshold=sk.iou_threshold, max_slots=cfg.slots, num_classes=num_classes,
            edges=True,
            **{
                **sk.solver_options(sk.eps_start),
                "fuse_boxes": cfg.set_loss_fused_boxes,
                "appearance_capacity": cfg.set_loss_appearance_capacity,
            },
            decode_iters=0, spatial_grad=cfg.set_loss_spatial_grad,
        )  # fmt: skip
        self.sinkhorn.plan_grad_scale = self._plan_grad_scale()
        self.criterion = SetCriterion(
            scores=cfg.set_loss_scores,  # type: ignore[arg-type]
            rank_weight=cfg.set_loss_rank_weight,
        )
        self.mask_head = (
            MaskHead(cfg.masks, cfg.fpn_channels, strides[0]) if cfg.mask_head else None
        )
        self.box_quality = BoxQualityHead(cfg.fpn_channels, strides[0]) if cfg.box_quality else None
        self.size_divisor = max(strides)
        self._nms_method = ""
        self.nms_method = cfg.nms
        self.progress = 1.0  # fraction of training done; set by set_epoch_progress

    @property
    def nms_method(self) -> str:
        return self._nms_method

    @nms_method.setter
    def nms_method(self, method: str) -> None:
        if method not in NMS_METHODS:
            raise FabricdetError(f"unknown NMS method {method!r}; choose one of {NMS_METHODS}")
        self._nms_method = method

    def set_epoch_progress(self, progress: float) -> None:
        """Anneal SinkhornNMS' eps geometrically from ``eps_start`` to ``eps`` over training and
        ramp the set loss in over its warm-up."""
        sk = self.cfg.sinkhorn
        p = min(max(progress, 0.0), 1.0)
        self.progress = p
        self.sinkhorn.eps = sk.eps_start * (sk.eps / sk.eps_start) ** p
        self.sinkhorn.plan_grad_scale = self._plan_grad_scale()

    def _plan_grad_scale(self) -> float:
        """Factor on the set loss' gradient through the plan (``set_loss_plan_grad``)."""
        eps_start = self.cfg.sinkhorn.eps_start
        return plan_grad_scale(self.cfg.set_loss_plan_grad, self.sinkhorn.eps, eps_start)

    def _batch(self, images: list[Tensor]) -> Tensor:
        """Normalise and pad to a common size that is a multiple of the largest stride."""
        h = max(img.shape[-2] for img in images)
        w = max(img.shape[-1] for img in images)
        d = self.size_divisor
        h, w = math.ceil(h / d) * d, math.ceil(w / d) * d
        return torch.stack(
            [
                F.pad((img - PIXEL_MEAN) / PIXEL_STD, (0, w - img.shape[-1], 0, h - img.shape[-2]))
                for img in images
            ]
        )

    def features(self, batch: Tensor) -> list[Tensor]:
        """FPN features, one per stride, of a normalised, padded batch (``Tensor[B, 3, H, W]``
        from :meth:`_batch`); the backbone reads its texture channel too when configured."""
        if self.cfg.texture_input:
            batch = torch.cat([batch, texture_channel(batch, self.size_divisor)], 1)
        return self.neck(self.backbone(batch))

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch = self._batch(images)
        feats = self.features(batch)
        out = self.head(feats)
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets")
            # The set loss' gradient through the plan is many times the dense losses'; with
            # set_loss_backbone off it trains the head alone, on a copy of its pass over
            # features cut from the backbone and FPN.
            set_out = out
            if self.cfg.set_loss and not self.cfg.set_loss_backbone:
                set_out = self.head([f.detach() for f in feats])
            losses = self.losses(out, targets, sizes, set_out, feats)
            if self.mask_head is not None:
                losses.update(self.mask_head.losses(feats, batch, targets, self.progress))
            return losses
        results = self.postprocess(out, sizes, feats)
        if self.mask_head is not None:
            self.add_masks(results, feats, batch, sizes)
        return results

    @torch.no_grad()
    def add_masks(
        self,
        results: list[dict[str, Tensor]],
        feats: list[Tensor],
        batch: Tensor,
        sizes: list[tuple[int, int]],
    ) -> None:
        """Add ``masks`` and ``mask_uncertainty`` (Tensor[K, 1, H, W]) to each image's
        detections, in place; with ``masks.boxes_from_masks`` replace each box by its mask's
        tight box (the mask's extent is the sharper localisation) where the mask is not empty.
        """
        head = self.mask_head
        assert head is not None
        boxes = torch.cat([r["boxes"] for r in results]).reshape(-1, 4)
        index = torch.cat(
            [torch.full((len(r["boxes"]),), b, dtype=torch.long) for b, r in enumerate(results)]
        ).to(boxes.device)
        out = head(feats, batch, boxes.to(batch.dtype), index)
        probs, uncertainty = head.probabilities(out)
        start = 0
        for r, (h, w) in zip(results, sizes, strict=True):
            k = len(r["boxes"])
            part = slice(start, start + k)
            start += k
            r["masks"] = head.paste(probs[part], out.rois[part], h, w)
            r["mask_uncertainty"] = head.paste(uncertainty[part], out.rois[part], h, w)
            if self.cfg.masks.boxes_from_masks:
                r["boxes"] = boxes_from_masks(
                    r["masks"][:, 0], r["boxes"], self.cfg.masks.threshold
                )

    def losses(
        self,
        out: HeadOutput,
        targets: list[dict[str, Tensor]],
        sizes: list[tuple[int, int]],
        set_out: HeadOutput | None = None,
        feats: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Dense losses (assigned per image) on ``out``, the box-quality head's loss (with the
        head; it reads ``feats``, the FPN features) and the set loss through SinkhornNMS on
        ``set_out`` (the same values; default: ``out``)."""
        boxes = decode_boxes(out.points, out.distances)  # [B, A, 4]
        scores = candidate_scores(out).detach()
        cls_sum = qual_sum = box_sum = l1_sum = embed_sum = out.cls_logits.sum() * 0
        num_pos = 0.0
        # The candidates the NMS sees (top-scoring, wherever they are): their embeddings are
        # what SinkhornNMS compares at inference, positives or not (and the boxes the
        # box-quality head rates).
        has_embeddings = bool(out.embeddings.shape[-1])
        cand = (
            select_candidates(out, sizes, self.cfg.set_topk, score_thresh=0.0)
            if has_embeddings or self.cfg.set_loss or self.box_quality is not None
            else None
        )
        for b, target in enumerate(targets):
            gt_boxes, gt_labels = target["boxes"].to(boxes.dtype), target["labels"]
            a = assign(
                out.points, out.strides, boxes[b].detach(), scores[b], gt_boxes, gt_labels,
                radius=self.cfg.assign_radius, topk=self.cfg.assign_topk,
                min_k=self.cfg.assign_min_k,
            )  # fmt: skip
            pos = a.gt_index >= 0
            cls_target = torch.zeros_like(out.cls_logits[b])
            cls_target[pos, gt_labels[a.gt_index[pos]]] = 1.0
            cls_sum = cls_sum + focal_loss(out.cls_logits[b], cls_target)
            qual_sum = qual_sum + quality_loss(out.quality_logits[b][pos], a.iou[pos])
            matched = gt_boxes[a.gt_index[pos]]
            box_sum = box_sum + box_loss(boxes[b][pos], matched, torch.ones_like(a.iou[pos]))
            l1_sum = l1_sum + box_l1_loss(boxes[b][pos], matched, out.points[pos], out.strides[pos])
            if cand is not None and has_embeddings:
                emb, owner = self._embedding_targets(out, cand, b, pos, a.gt_index, gt_boxes)
                embed_sum = embed_sum + embedding_loss(emb, owner)
                if self.cfg.embed_neighbour_weight > 0:
                    neighbours = self._neighbour_loss(cand, b, gt_boxes)
                    embed_sum = embed_sum + self.cfg.embed_neighbour_weight * neighbours
            num_pos += float(pos.sum())
        norm = max(num_pos, 1.0)
        losses = {
            "cls": cls_sum / norm,
            "quality": qual_sum / norm,
            "box": 2.0 * box_sum / norm,
            "box_l1": self.cfg.l1_weight * l1_sum / norm,
            "embed": embed_sum / len(targets),
        }
        if self.box_quality is not None:
            assert cand is not None and feats is not None, "the box-quality loss needs feats"
            losses["box_quality"] = self._box_quality_loss(cand, feats, targets)
        if cand is not None and self.cfg.set_loss:
            if set_out is not None and set_out is not out:
                cand = select_candidates(set_out, sizes, self.cfg.set_topk, score_thresh=0.0)
            nms = self.sinkhorn(
                cand.boxes, cand.scores, cand.labels, self._embeddings(cand), cand.mask
            )
            set_losses = self.criterion(nms, targets, (cand.boxes, cand.scores, cand.mask))
            ramp = min(1.0, self.progress / max(self.cfg.set_loss_warmup, 1e-9))
            weight = self.cfg.set_loss_weight * ramp
            losses.update({k: weight * v for k, v in set_losses.items()})
        return losses

    @staticmethod
    def _embedding_targets(
        out: HeadOutput, cand: Candidates, b: int, pos: Tensor, gt_index: Tensor, gt_boxes: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Embeddings to train in image ``b`` and the object each belongs to.

        The assigned positives, plus every candidate whose box overlaps an object by IoU >= 0.5:
        a duplicate the assignment left out (outside its centre radius, say) would otherwise
        keep an untrained embedding, and SinkhornNMS' appearance term would read its noise as
        a different object and keep it.

        Returns:
            embeddings (Tensor[P, D]), owner (Tensor[P] int64).
        """
        emb, owner = out.embeddings[b][pos], gt_index[pos]
        if len(gt_boxes) == 0:
            return emb, owner
        best, obj = box_iou(cand.boxes[b].detach(), gt_boxes).max(1)
        dup = (best >= 0.5) & cand.mask[b]
        return torch.cat([emb, cand.embeddings[b][dup]]), torch.cat([owner, obj[dup]])

    def _neighbour_loss(self, cand: Candidates, b: int, gt_boxes: Tensor) -> Tensor:
        """:func:`neighbour_embedding_loss` on image ``b``'s candidates that lie on exactly one
        object (IoU >= 0.5 with it and below with every other: a box between two objects has no
        side to be pushed to)."""
        m = cand.mask[b]
        boxes, emb = cand.boxes[b][m].detach(), cand.embeddings[b][m]
        if len(gt_boxes) == 0 or len(boxes) == 0:
            return emb.sum() * 0
        iou = box_iou(boxes, gt_boxes)
        best = iou.topk(min(2, len(gt_boxes)), dim=1)
        on_one = best.values[:, 0] >= 0.5
        if len(gt_boxes) > 1:
            on_one &= best.values[:, 1] < 0.5
        return neighbour_embedding_loss(
            emb[on_one], boxes[on_one], best.indices[on_one, 0], cand.labels[b][m][on_one],
            self.cfg.sinkhorn.iou_threshold,
        )  # fmt: skip

    def _box_quality_loss(
        self, cand: Candidates, feats: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> Tensor:
        """The box-quality head's loss on the candidates the NMS would see (``cand``: the top
        ``set_topk``) and jittered copies of the objects' boxes, towards their IoU with their
        objects."""
        head = self.box_quality
        assert head is not None
        boxes, ious, index = [], [], []
        for b, target in enumerate(targets):
            m = cand.mask[b]
            gt_boxes, gt_labels = target["boxes"].to(cand.boxes.dtype), target["labels"]
            image_boxes = torch.cat([cand.boxes[b][m].detach(), jittered_boxes(gt_boxes)])
            labels = torch.cat([cand.labels[b][m], gt_labels.repeat_interleave(JITTER_COPIES)])
            boxes.append(image_boxes)
            ious.append(box_quality_targets(image_boxes, labels, gt_boxes, gt_labels))
            index.append(torch.full((len(image_boxes),), b, device=image_boxes.device))
        logits = head(feats[0].detach(), torch.cat(boxes), torch.cat(index))
        return self.cfg.box_quality_weight * box_quality_loss(logits, torch.cat(ious))

    @property
    def rescores(self) -> bool:
        """Whether inference rescores the candidates with the box-quality head."""
        return self.box_quality is not None and self.cfg.box_quality_rescore

    def rescored(
        self, cand: Candidates, out: HeadOutput, feats: list[Tensor]
    ) -> tuple[Candidates, Tensor]:
        """``cand`` with each score ``sqrt(p_class * q_box)``: the box-quality head's IoU in
        place of the dense head's (the candidates stay those the dense scores selected), and
        ``q_box`` (Tensor[B, M])."""
        head = self.box_quality
        assert head is not None and cand.locations is not None
        index, slot = torch.nonzero(cand.mask, as_tuple=True)  # the real candidates only
        q_box = torch.zeros_like(cand.scores)
        q_box[index, slot] = head(feats[0], cand.boxes[index, slot], index).sigmoid()
        c = out.cls_logits.shape[-1]
        p_class = out.cls_logits.flatten(1).gather(1, cand.locations * c + cand.labels).sigmoid()
        return cand._replace(scores=(p_class * q_box).sqrt()), q_box

    def _embeddings(self, cand: Candidates) -> Tensor | None:
        return cand.embeddings if cand.embeddings.shape[-1] else None

    @torch.no_grad()
    def postprocess(
        self, out: HeadOutput, sizes: list[tuple[int, int]], feats: list[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """Score threshold and top-k per image, the box-quality rescoring (with its head,
        ``box_quality_rescore`` and ``feats``, the FPN features), the chosen NMS method, and
        each kept detection's cluster medoid as its box (``medoid_boxes``)."""
        cfg = self.cfg
        cand = select_candidates(out, sizes, cfg.topk_candidates, cfg.score_thresh)
        if self.rescores and feats is not None:
            cand, _ = self.rescored(cand, out, feats)
        results = []
        for b in range(len(sizes)):
            m = cand.mask[b]
            boxes, scores, labels = cand.boxes[b][m], cand.scores[b][m], cand.labels[b][m]
            options: dict[str, Any] = {}
            if self.nms_method == "sinkhorn":
                options = cfg.sinkhorn.solver_options(cfg.sinkhorn.eps)
                emb = self._embeddings(cand)
                if emb is not None:
                    options["embeddings"] = emb[b][m]
            res = batched_nms(
                boxes, scores, labels, cfg.sinkhorn.iou_threshold, method=self.nms_method,
                return_result=True, **options,
            )  # fmt: skip
            keep = res.keep[: cfg.detections_per_img]
            out_boxes = res.boxes[: cfg.detections_per_img]
            if cfg.medoid_boxes:  # in place of the method's boxes, so theirs go unused
                threshold, power = cfg.sinkhorn.iou_threshold, cfg.medoid_power
                out_boxes = medoid_boxes(boxes, scores, labels, keep, threshold, power)
            results.append(
                {
                    "boxes": out_boxes,
                    "scores": res.scores[: cfg.detections_per_img],
                    "labels": labels[keep],
                }
            )
        return results


def build_model(cfg: ModelConfig, num_classes: int) -> FabricDetector:
    """The detector for ``num_classes`` foreground classes."""
    return FabricDetector(cfg, num_classes)
