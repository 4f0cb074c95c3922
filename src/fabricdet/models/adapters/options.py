"""Options of the torchvision adapters: SinkhornNMS parameters, where it sits, the set loss.

One frozen dataclass shared by the one-stage and two-stage adapters, so that a benchmark or a
config can hold the whole choice as one value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fabricdet.models.set_loss import PLAN_GRAD
from fabricdet.ops import NMS_METHODS
from fabricdet.ops.boxes import NWD_SCALE

#: Where a two-stage model (Faster/Mask R-CNN) uses SinkhornNMS: on the RPN proposals, on the
#: box head's detections, or on both.
Stage = Literal["rpn", "box", "both"]
STAGES: tuple[str, ...] = ("rpn", "box", "both")


@dataclass(frozen=True)
class AdapterOptions:
    """How a torchvision detector runs with SinkhornNMS.

    Attributes:
        nms_method: NMS at inference, any of :data:`fabricdet.ops.NMS_METHODS`; ``"greedy"`` is
            the host's own NMS (torchvision's ``batched_nms``), so one adapted model can be
            evaluated both ways. Changeable later through the adapter's ``nms_method``.
        iou_threshold: SinkhornNMS ``theta``; ``None`` takes the host's own NMS threshold at
            each place (FCOS 0.6, RetinaNet 0.5, RPN 0.7, R-CNN box head 0.5 by default).
        eps: entropy at inference (hard decode).
        eps_start: entropy of the training solves at the start of training; annealed
            geometrically to ``eps`` by ``set_epoch_progress`` (soft plans early spread the
            gradient over the whole cluster, sharp ones late match the hard decode). Without
            those calls (a training loop of one's own) training solves stay at ``eps_start``
            and the set loss at full weight.
        num_iters, spatial_weight, quality_weight, dustbin_cost, overlap, nwd_scale:
            :class:`fabricdet.ops.SinkhornNMS` options (no appearance term: torchvision heads
            have no embeddings).
        fuse_boxes: at inference, output SinkhornNMS' plan-fused boxes (``False``, default:
            the kept candidates' own boxes, as the host's NMS outputs them: on the natively
            trained hosts they never scored below the host's NMS, while the fused boxes went
            from 0.027 AP below them on Faster R-CNN to 0.008 above on Mask R-CNN, README
            "torchvision detectors").
        fuse_power: the fused box weights each duplicate's plan mass by its score to this
            power (:func:`fabricdet.ops.sinkhorn_nms_terms.fusion_factor`).
        train_through: add the set loss on SinkhornNMS' slots to the host's losses in training.
        keep_weight, box_weight: :class:`fabricdet.models.set_loss.SetCriterion` weights.
        set_weight: factor on every set-loss term.
        set_warmup: fraction of training over which the set loss ramps in from 0 (the slots
            mean nothing until the heads produce sensible candidates).
        set_min_iou: a slot matches an object only above this IoU.
        set_fused_boxes: the set loss' box term takes each slot's plan-fused box (``True``)
            or its seed's own box (``False``), as the detector's ``model.set_loss_fused_boxes``
            (on Faster R-CNN the seeds' boxes cost more AP than the fused ones, one seed).
        set_plan_grad: the set loss' gradient through SinkhornNMS' plan, as the detector's
            ``model.set_loss_plan_grad``: ``none`` (default) holds the matching constant, so
            the set loss trains the slots' scores and, through the fused boxes, the
            candidates' boxes; ``raw`` also passes it through the plan into every candidate's
            score; ``eps`` scales that by ``eps / eps_start``.
        set_spatial_grad: with a gradient through the plan, it also reaches the boxes by the
            plan's spatial term (``model.set_loss_spatial_grad``). Both defaults follow what
            scored best on the fabric detector (docs/experiment-log.md, "Does the gradient
            through the matching help at all?"); on the torchvision hosts they are not
            measured yet.
        set_topk: candidates per image fed to SinkhornNMS in training (top scores).
        set_slots: SinkhornNMS slots ``K`` in training.
        set_proposals: two-stage box stage: RPN proposals per image the set loss re-scores
            (the best by objectness; the host's sampled RoIs hold the ground truth itself, so
            they cannot be used).
        stage: two-stage models only: where SinkhornNMS replaces the NMS, and where the set
            loss trains through it.
    """

    nms_method: str = "sinkhorn"
    iou_threshold: float | None = None
    eps: float = 0.05
    eps_start: float = 0.5
    num_iters: int = 10
    spatial_weight: float = 5.0
    quality_weight: float = 1.0
    dustbin_cost: float = 3.0
    overlap: str = "iou+nwd"
    nwd_scale: float = NWD_SCALE
    fuse_boxes: bool = False
    fuse_power: float = 0.0
    train_through: bool = True
    keep_weight: float = 1.0
    box_weight: float = 2.0
    set_weight: float = 1.0
    set_warmup: float = 0.3
    set_min_iou: float = 0.3
    set_fused_boxes: bool = True
    set_plan_grad: str = "none"
    set_spatial_grad: bool = False
    set_topk: int = 200
    set_slots: int = 100
    set_proposals: int = 256
    stage: Stage = "box"

    def __post_init__(self) -> None:
        if self.nms_method not in NMS_METHODS:
            raise ValueError(f"nms_method must be one of {NMS_METHODS}, got {self.nms_method!r}")
        if self.set_plan_grad not in PLAN_GRAD:
            raise ValueError(
                f"set_plan_grad must be one of {PLAN_GRAD}, got {self.set_plan_grad!r}"
            )
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if not (self.eps > 0 and self.eps_start > 0 and self.num_iters >= 1):
            raise ValueError("need eps > 0, eps_start > 0 and num_iters >= 1")
        if min(self.set_topk, self.set_slots, self.set_proposals) < 1:
            raise ValueError("set_topk, set_slots and set_proposals must be >= 1")
        if not self.fuse_power >= 0:
            raise ValueError(f"fuse_power must be >= 0, got {self.fuse_power}")
        if self.iou_threshold is not None and not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")

    def threshold(self, host_threshold: float) -> float:
        """The NMS threshold at a place whose host threshold is ``host_threshold``."""
        return host_threshold if self.iou_threshold is None else self.iou_threshold

    def solver_options(self) -> dict[str, Any]:
        """Keyword options of :class:`fabricdet.ops.SinkhornNMS` (and of
        ``batched_nms(method="sinkhorn")``) at inference."""
        return {
            "eps": self.eps,
            "num_iters": self.num_iters,
            "spatial_weight": self.spatial_weight,
            "quality_weight": self.quality_weight,
            "dustbin_cost": self.dustbin_cost,
            "overlap": self.overlap,
            "nwd_scale": self.nwd_scale,
            "fuse_power": self.fuse_power,
        }
