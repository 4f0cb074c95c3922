"""Model configuration: one typed dataclass, part of the run config saved with every run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SinkhornNMSConfig:
    """Options of :class:`fabricdet.ops.SinkhornNMS` inside the detector."""

    iou_threshold: float = 0.5
    eps: float = 0.05
    eps_start: float = 0.5  # training anneals eps from eps_start to eps
    num_iters: int = 10
    spatial_weight: float = 5.0
    feature_weight: float = 1.0
    quality_weight: float = 1.0
    dustbin_cost: float = 3.0
    overlap: str = "iou+nwd"


@dataclass
class ModelConfig:
    """The dense anchor-free detector (FCOS/GFL family) with SinkhornNMS.

    Attributes:
        backbone: ``"tiny"`` (default, fast on CPU), ``"resnet18"``, ``"resnet50"`` or
            ``"mobilenet_v3"`` (torchvision, random init).
        backbone_weights: optional local ``.pt`` state dict for the backbone.
        width: base channel count of the tiny backbone.
        fpn_channels: channels of the FPN and the head.
        strides: FPN levels used, as strides (4 resolves knots of a few pixels).
        head_convs: conv layers in each head tower.
        embed_dim: embedding size for SinkhornNMS' appearance term (0 disables it).
        nms: NMS method at inference (``greedy``, ``soft``, ``matrix``, ``diou``, ``wbf``,
            ``sinkhorn``); swappable at eval time.
        set_loss: train through SinkhornNMS with the set loss (``False``: dense losses only).
        set_loss_weight: weight of the set loss terms.
        set_loss_warmup: fraction of training over which the set loss weight ramps up from 0
            (the slots are meaningless until the dense head produces sensible candidates).
        l1_weight: weight of the L1 loss on the box encoding (beside GIoU; keeps box sizes
            from drifting, see :func:`fabricdet.models.losses.box_l1_loss`).
        assign_min_k, assign_topk, assign_radius: label assignment (see
            :func:`fabricdet.models.assigner.assign`): at least ``assign_min_k`` positives per
            object, dynamic k from its ``assign_topk`` best IoUs, centre radius in strides.
        set_topk: candidates per image fed to SinkhornNMS in training.
        slots: SinkhornNMS slots K in training.
        score_thresh, topk_candidates, detections_per_img: inference post-processing.
        sinkhorn: SinkhornNMS options.
    """

    backbone: str = "tiny"
    backbone_weights: str | None = None
    width: int = 24
    fpn_channels: int = 64
    strides: tuple[int, ...] = (4, 8, 16, 32)
    head_convs: int = 2
    embed_dim: int = 16
    nms: str = "sinkhorn"
    set_loss: bool = True
    set_loss_weight: float = 1.0
    set_loss_warmup: float = 0.3
    l1_weight: float = 1.0
    assign_min_k: int = 12
    assign_topk: int = 20
    assign_radius: float = 2.5
    set_topk: int = 300
    slots: int = 100
    score_thresh: float = 0.01
    topk_candidates: int = 1000
    detections_per_img: int = 100
    sinkhorn: SinkhornNMSConfig = field(default_factory=SinkhornNMSConfig)
