"""Model configuration: one typed dataclass, part of the run config saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SinkhornNMSConfig:
    """Options of :class:`fabricdet.ops.SinkhornNMS` inside the detector.

    ``fuse_boxes`` applies at inference: each kept slot outputs its seed's own box (default) or
    the plan-weighted fused box. On the trained detectors the fused boxes cost AP, AP50 and
    most of all the adjacent defects (docs/experiment-log.md, "The ablation under today's
    default"). What the set loss trains is ``ModelConfig.set_loss_fused_boxes``.

    ``appearance_capacity`` applies at inference too (training's is
    ``ModelConfig.set_loss_appearance_capacity``): each slot's capacity is the look-alike mass
    around it, or (default) its class mass. The detector's embeddings learn the class rather
    than the instance, and capacities of the local mass then only keep duplicates whose own
    slot is crowded (docs/experiment-log.md, "Why SinkhornNMS trails greedy NMS at
    inference").
    """

    iou_threshold: float = 0.5
    eps: float = 0.05
    eps_start: float = 0.5  # training anneals eps from eps_start to eps
    num_iters: int = 10
    spatial_weight: float = 10.0
    feature_weight: float = 1.0
    feature_margin: float = 0.5
    quality_weight: float = 1.0
    quality_range: float = 1.0
    dustbin_cost: float = 3.0
    appearance_capacity: bool = False  # at inference (training: set_loss_appearance_capacity)
    overlap: str = "iou+nwd"
    fuse_boxes: bool = False  # at inference: plan-weighted fused boxes, else the seeds' own
    fuse_power: float = 0.0  # fused boxes weight each duplicate's mass by its score ** this

    def solver_options(self, eps: float) -> dict[str, Any]:
        """Keyword options of SinkhornNMS (and of ``batched_nms(method="sinkhorn")``) at
        entropy ``eps``, every field but the IoU threshold and the annealing start."""
        options = asdict(self)
        del options["iou_threshold"], options["eps_start"]
        return {**options, "eps": eps}


@dataclass
class MaskConfig:
    """The mask head (:mod:`fabricdet.models.mask_head`), on when ``ModelConfig.mask_head``.

    Supervision follows the data: boxes only by default and whenever the training targets
    carry no masks; true masks when they do (``data.masks=full``).

    Attributes:
        channels: channels of the shared mask features.
        stride: stride of the shared mask features (2 keeps 2 px threads).
        roi_size: side ``M`` of each instance's grid.
        roi_expand, roi_pad: the grid covers the box grown by this fraction of its size plus
            this many pixels per side (outside-box cells: background evidence, overhang).
        controller_pool: RoI pooling size of the features the controller reads.
        dynamic_channels: width of the per-instance 1x1 network.
        jitter: training boxes are jittered by this fraction of their size (std).
        max_instances: instances per training batch (random subset above it).
        projection_weight, pairwise_weight, self_weight, full_weight: loss weights.
        tversky_alpha, tversky_beta: projection loss weights of false alarms and misses.
        pairwise_threshold, pairwise_dilation: BoxInst's affinity threshold and dilation.
        affinity_theta: similarity scale, in noise levels of the texture-suppressed image.
        warmup: fraction of training over which the pairwise loss ramps in.
        self_start: fraction of training after which the confidence-weighted self-training
            towards refined masks starts.
        evidence_gain, evidence_offset: the appearance evidence's logit per background
            deviation, and its zero point.
        evidence_weights: pool weights of (head, appearance-smoothed head, appearance).
        refine: output refined masks (else the head's sigmoid).
        refine_iters, refine_temperature, refine_pair_weight, refine_floor_gain: the
            refinement's mean-field steps, ``T``, ``lambda`` and ``gamma``.
        boxes_from_masks: at inference, replace each box by its refined mask's tight box.
        threshold: probability at which masks are binarised (RLE, boxes from masks).
    """

    channels: int = 8
    stride: int = 2
    roi_size: int = 32
    roi_expand: float = 0.2
    roi_pad: float = 3.0
    controller_pool: int = 3
    dynamic_channels: int = 8
    jitter: float = 0.05
    max_instances: int = 64
    projection_weight: float = 1.0
    pairwise_weight: float = 1.0
    self_weight: float = 0.5
    full_weight: float = 1.0
    tversky_alpha: float = 0.5
    tversky_beta: float = 0.5
    pairwise_threshold: float = 0.3
    pairwise_dilation: int = 2
    affinity_theta: float = 2.0
    warmup: float = 0.2
    self_start: float = 0.3
    evidence_gain: float = 1.5
    evidence_offset: float = 3.0
    evidence_weights: tuple[float, float, float] = (1.0, 1.0, 0.5)
    refine: bool = True
    refine_iters: int = 6
    refine_temperature: float = 0.5
    refine_pair_weight: float = 2.0
    refine_floor_gain: float = 1.5
    boxes_from_masks: bool = False
    threshold: float = 0.5


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
        embed_neighbour_weight: weight of :func:`fabricdet.models.losses.neighbour_embedding_loss`
            in the ``embed`` loss: overlapping same-class candidates on two different objects
            are pushed to orthogonal embeddings, where the appearance term has to tell them
            apart (0, default: only the object-level pull-push; at 1.0 on three seeds the term
            stayed inert and accuracy fell, docs/experiment-log.md, "A probe for the
            appearance term").
        nms: NMS method at inference (``greedy``, ``soft``, ``matrix``, ``diou``, ``wbf``,
            ``sinkhorn``); swappable at eval time.
        set_loss: train through SinkhornNMS with the set loss (``False``: dense losses only).
        set_loss_weight: weight of the set loss terms.
        set_loss_warmup: fraction of training over which the set loss weight ramps up from 0
            (the slots are meaningless until the dense head produces sensible candidates).
        set_loss_scores: which slots' scores the set loss trains directly: ``all``,
            ``matched`` or ``none`` (:class:`fabricdet.models.set_loss.SetCriterion`).
        set_loss_rank_weight: weight of the set loss' ranking term
            (:func:`fabricdet.models.set_loss.slot_rank_loss`: each matched slot's members
            ordered by placement in their scores; 0, default: off).
        set_loss_backbone: the set loss' gradient reaches the backbone and FPN (``False``:
            it trains the head only, at the cost of a second head pass in training).
        set_loss_plan_grad: ``none`` (default): no gradient through the plan (the matching
            and each slot's kept fraction are constants, as a Hungarian matching is: the keep
            loss trains the slots' scores, the box loss the candidates' boxes by their fixed
            plan weights; it scored highest, docs/experiment-log.md, "Does the gradient
            through the matching help at all?");
            ``raw``: the set loss' gradient through the plan as it is (its size grows like
            ``1 / eps`` as training anneals eps); ``eps``: scaled by ``eps / eps_start``, so it
            keeps the size it had at the start.
        set_loss_fused_boxes: the set loss' box term (and its matching) takes each slot's
            plan-fused box, as DESIGN's set loss does (``True``), or its seed's own box, the
            box inference outputs (``False``; then only the seeds' boxes are trained by it).
            Over three seeds of the demo's training the seeds' boxes scored no better in AP
            and lower in AP75 (docs/experiment-log.md, "The set loss on the seeds' own
            boxes").
        set_loss_appearance_capacity: the set loss' SinkhornNMS gives each slot the capacity
            of the look-alike mass around it (``True``, default) or its class mass (``False``,
            as the inference decode does by default:
            ``SinkhornNMSConfig.appearance_capacity``). Over five seeds of the demo's training
            the class mass scored no differently (docs/experiment-log.md, "Why SinkhornNMS
            trails greedy NMS at inference").
        set_loss_spatial_grad: the set loss' gradient through the plan reaches the boxes by
            the spatial term (``False``, default: only by the fused boxes, so the loss cannot
            change the matching by moving boxes; with it, training through SinkhornNMS moved
            boxes apart to keep slots and cost accuracy, docs/experiment-log.md, "The ablation
            at 2400 steps").
        l1_weight: weight of the L1 loss on the box encoding (beside GIoU; keeps box sizes
            from drifting, see :func:`fabricdet.models.losses.box_l1_loss`).
        assign_min_k, assign_topk, assign_radius: label assignment (see
            :func:`fabricdet.models.assigner.assign`): at least ``assign_min_k`` positives per
            object, dynamic k from its ``assign_topk`` best IoUs, centre radius in strides.
        set_topk: candidates per image fed to SinkhornNMS in training.
        slots: SinkhornNMS slots K in training.
        score_thresh, topk_candidates, detections_per_img: inference post-processing.
        medoid_boxes: each kept detection outputs the medoid of its cluster
            (:mod:`fabricdet.ops.medoid`: the member its duplicates agree on, weighted by score
            to ``medoid_power``) in place of the NMS method's box, whichever the method; its
            score stays the method's. Over two ablations at the demo's budget (3 and 5 seeds)
            it raised test AP in 91 of 96 (model, method) pairs (README, "Choosing the kept
            box").
        medoid_power: ``p`` of the medoid's score weighting (0: every duplicate alike).
        sinkhorn: SinkhornNMS options.
        mask_head: add the mask head (eval outputs gain ``masks``, Tensor[K, 1, H, W]
            probabilities, and ``mask_uncertainty``, the same shape, in [0, 1]).
        box_quality: add the box-quality head (:mod:`fabricdet.models.box_quality`): trained
            on detached features beside the detector (loss ``box_quality``), it predicts each
            candidate box's IoU from features pooled over the box, and at inference replaces
            the dense IoU quality in the candidates' scores when ``box_quality_rescore``.
        box_quality_weight: weight of its loss.
        box_quality_rescore: rescore the candidates with it at inference (``False``: the
            detector's own scores, to compare on one checkpoint).
        texture_input: the backbone also reads the image with its woven background removed
            (:mod:`fabricdet.models.texture_input`), a fourth input channel.
        masks: mask head options.
    """

    backbone: str = "tiny"
    backbone_weights: str | None = None
    width: int = 24
    fpn_channels: int = 64
    strides: tuple[int, ...] = (4, 8, 16, 32)
    head_convs: int = 2
    embed_dim: int = 16
    embed_neighbour_weight: float = 0.0
    nms: str = "sinkhorn"
    set_loss: bool = True
    set_loss_weight: float = 1.0
    set_loss_warmup: float = 0.3
    set_loss_scores: str = "all"
    set_loss_rank_weight: float = 0.0
    set_loss_backbone: bool = True
    set_loss_plan_grad: str = "none"
    set_loss_spatial_grad: bool = False
    set_loss_fused_boxes: bool = True
    set_loss_appearance_capacity: bool = True
    l1_weight: float = 1.0
    assign_min_k: int = 12
    assign_topk: int = 20
    assign_radius: float = 2.5
    set_topk: int = 300
    slots: int = 100
    score_thresh: float = 0.01
    topk_candidates: int = 1000
    detections_per_img: int = 100
    medoid_boxes: bool = True
    medoid_power: float = 2.0
    sinkhorn: SinkhornNMSConfig = field(default_factory=SinkhornNMSConfig)
    mask_head: bool = False
    box_quality: bool = False
    box_quality_weight: float = 1.0
    box_quality_rescore: bool = True
    texture_input: bool = True
    masks: MaskConfig = field(default_factory=MaskConfig)
