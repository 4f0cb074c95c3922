"""Run configuration: typed dataclasses, named presets and their validation.

A run is described by one :class:`RunConfig` (model, data, train, eval). It is built from a
named preset (:data:`PRESETS`), changed with ``key=value`` overrides
(:func:`fabricdet.engine.config_io.apply_overrides`) and saved as ``RUN/config.yaml`` beside
the run's checkpoints, so every number of a run can be traced back to its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import get_args

from fabricdet.errors import FabricdetError
from fabricdet.models.config import ModelConfig
from fabricdet.models.set_loss import PLAN_GRAD, SetLossScores
from fabricdet.ops.boxes import OverlapKind
from fabricdet.ops.nms import NMS_METHODS

MASK_MODES: tuple[str, ...] = ("none", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class ConfigError(FabricdetError, ValueError):
    """A preset name, override, config file or config value is invalid."""


@dataclass
class DataConfig:
    """What the model sees: splits, image scale, augmentation, sampling, loading.

    Attributes:
        train_split, val_split: split names used for training and for evaluation.
        max_size: the long side of the resized image, in pixels. The aspect ratio is kept
            (a 2446x1000 image becomes about 1024x419 at 1024, never a square).
        size_divisor: both sides are rounded to a multiple of this (the detector's largest
            stride), so 1024x419 becomes 1024x416.
        crop_width, crop_height: training crops of this size (in resized pixels; 0: whole
            images). Defects are small against a frame, so a crop around one costs a fraction
            of the frame's compute for the same positives; evaluation always sees whole images.
        crop_on_object: probability that a crop holds an object's centre (else uniform).
        hflip, vflip: probability of a horizontal / vertical flip in training. Woven fabric
            looks the same mirrored, and warp/weft defects stay warp/weft under both.
        rfs_threshold: LVIS repeat-factor sampling threshold ``t``: an image whose rarest
            category appears in a fraction ``f < t`` of the training images is repeated
            about ``sqrt(t / f)`` times per epoch. 0 turns it off.
        masks: ``"none"`` (boxes only) or ``"full"`` (decode the dataset's RLE masks into
            ``targets["masks"]``; for fully supervised mask training and mask metrics).
        num_workers: data-loading processes (0 loads in the training process).
    """

    train_split: str = "train"
    val_split: str = "val"
    max_size: int = 1024
    size_divisor: int = 32
    crop_width: int = 0
    crop_height: int = 0
    crop_on_object: float = 0.7
    hflip: float = 0.5
    vflip: float = 0.5
    rfs_threshold: float = 0.1
    masks: str = "none"
    num_workers: int = 2


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of a training run.

    Attributes:
        lr, weight_decay, betas: AdamW settings.
        warmup_steps: linear warm-up from ``lr * warmup_factor`` to ``lr``.
        warmup_factor: starting fraction of the learning rate.
        min_lr_ratio: cosine decay ends at ``lr * min_lr_ratio`` at ``max_steps``.
        batch_size: images per step per process.
        max_steps: optimiser steps of the whole schedule.
        checkpoint_every: write a resumable checkpoint every this many steps.
        seed: seeds the model initialisation, the sampler and the augmentation.
        amp: mixed precision (float16 autocast + gradient scaling); used on CUDA only.
        grad_clip: maximum global gradient norm; 0 turns clipping off.
        ema_decay: ``model.pt`` holds the exponential moving average of the weights with this
            decay (warmed up, see :mod:`fabricdet.engine.ema`); 0 publishes the last weights.
        log_every: log losses (progress line, TensorBoard) every this many steps.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        tensorboard: write TensorBoard scalars under ``RUN/tb`` when tensorboard is installed.
        find_unused_parameters: passed to DistributedDataParallel; needed only when some
            parameters get no gradient in a step.
    """

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    warmup_factor: float = 0.001
    min_lr_ratio: float = 0.01
    batch_size: int = 4
    max_steps: int = 2000
    checkpoint_every: int = 200
    seed: int = 0
    amp: bool = True
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    log_every: int = 10
    device: str = "auto"
    tensorboard: bool = True
    find_unused_parameters: bool = False


@dataclass
class EvalConfig:
    """Evaluation and inference settings.

    Attributes:
        nms: NMS method at evaluation; ``None`` keeps the model's own (``model.nms``).
        score_threshold: detections scoring below this are dropped before evaluation (low:
            COCO AP integrates over the whole precision-recall curve). The model's own
            ``model.score_thresh`` filters first.
        defect_threshold: an image counts as defective when its best detection scores at
            least this. The Tianchi submission holds the detections of those images only
            (the official scorer counts every image in it as defective), so the reported
            Tianchi score is the score of the written file; ``fabricdet detect`` reports
            the detections scoring at least this.
        batch_size: images per forward pass.
        warmup_iters: untimed forward passes before the latency is measured.
    """

    nms: str | None = None
    score_threshold: float = 0.001
    defect_threshold: float = 0.05
    batch_size: int = 4
    warmup_iters: int = 2


@dataclass
class RunConfig:
    """Everything a run depends on; saved as ``RUN/config.yaml`` and inside ``model.pt``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def eval_nms(self) -> str:
        """The NMS method evaluation uses: ``eval.nms``, else the model's."""
        return self.eval.nms or self.model.nms


def _check(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expected}")


def validate(cfg: RunConfig) -> RunConfig:
    """Check the values the engine relies on; return ``cfg`` unchanged.

    Raises:
        ConfigError: naming the key, its value and what is expected.
    """
    d, t, e = cfg.data, cfg.train, cfg.eval
    methods = ", ".join(NMS_METHODS)
    _check(cfg.model.nms in NMS_METHODS, "model.nms", cfg.model.nms, f"one of {methods}")
    _check(e.nms is None or e.nms in NMS_METHODS, "eval.nms", e.nms, f"none or one of {methods}")
    scores = get_args(SetLossScores)
    m = cfg.model
    _check(
        m.set_loss_scores in scores, "model.set_loss_scores", m.set_loss_scores, " or ".join(scores)
    )
    keys = ("embed_neighbour_weight", "set_loss_rank_weight", "box_quality_weight", "medoid_power")
    for key in keys:
        _check(getattr(m, key) >= 0, f"model.{key}", getattr(m, key), ">= 0")
    plan_grad = m.set_loss_plan_grad
    _check(plan_grad in PLAN_GRAD, "model.set_loss_plan_grad", plan_grad, " or ".join(PLAN_GRAD))
    _check(d.max_size >= 32, "data.max_size", d.max_size, "an integer >= 32")
    _check(d.size_divisor >= 1, "data.size_divisor", d.size_divisor, "an integer >= 1")
    for key, side in (("data.crop_width", d.crop_width), ("data.crop_height", d.crop_height)):
        _check(side == 0 or side >= d.size_divisor, key, side, "0 or >= data.size_divisor")
    _check(0.0 <= d.crop_on_object <= 1.0, "data.crop_on_object", d.crop_on_object, "0..1")
    _check(0.0 <= d.hflip <= 1.0, "data.hflip", d.hflip, "a probability in [0, 1]")
    _check(0.0 <= d.vflip <= 1.0, "data.vflip", d.vflip, "a probability in [0, 1]")
    _check(0.0 <= d.rfs_threshold <= 1.0, "data.rfs_threshold", d.rfs_threshold, "0..1")
    _check(d.masks in MASK_MODES, "data.masks", d.masks, f"one of {', '.join(MASK_MODES)}")
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, "an integer >= 0")
    _check(t.lr > 0.0, "train.lr", t.lr, "a positive number")
    _check(t.weight_decay >= 0.0, "train.weight_decay", t.weight_decay, "a number >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "an integer >= 0")
    _check(0.0 < t.warmup_factor <= 1.0, "train.warmup_factor", t.warmup_factor, "in (0, 1]")
    _check(0.0 <= t.min_lr_ratio <= 1.0, "train.min_lr_ratio", t.min_lr_ratio, "in [0, 1]")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.max_steps >= 1, "train.max_steps", t.max_steps, "an integer >= 1")
    _check(t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, ">= 1")
    _check(t.grad_clip >= 0.0, "train.grad_clip", t.grad_clip, "a number >= 0 (0: off)")
    _check(0.0 <= t.ema_decay < 1.0, "train.ema_decay", t.ema_decay, "in [0, 1) (0: off)")
    _check(t.log_every >= 1, "train.log_every", t.log_every, "an integer >= 1")
    _check(t.device in DEVICES, "train.device", t.device, f"one of {', '.join(DEVICES)}")
    sk = cfg.model.sinkhorn
    _check(
        0.0 < sk.iou_threshold <= 1.0, "model.sinkhorn.iou_threshold", sk.iou_threshold, "(0, 1]"
    )
    _check(sk.eps > 0.0, "model.sinkhorn.eps", sk.eps, "a positive number")
    _check(sk.eps_start > 0.0, "model.sinkhorn.eps_start", sk.eps_start, "a positive number")
    _check(sk.num_iters >= 1, "model.sinkhorn.num_iters", sk.num_iters, "an integer >= 1")
    for name in ("spatial_weight", "feature_weight", "quality_weight", "fuse_power"):
        value = getattr(sk, name)
        _check(value >= 0.0, f"model.sinkhorn.{name}", value, "a number >= 0")
    _check(
        0.0 <= sk.feature_margin < 1.0, "model.sinkhorn.feature_margin", sk.feature_margin, "[0, 1)"
    )
    _check(sk.quality_range > 0.0, "model.sinkhorn.quality_range", sk.quality_range, "> 0")
    overlaps = get_args(OverlapKind)
    _check(
        sk.overlap in overlaps,
        "model.sinkhorn.overlap",
        sk.overlap,
        f"one of {', '.join(overlaps)}",
    )
    _check(0.0 <= e.score_threshold <= 1.0, "eval.score_threshold", e.score_threshold, "0..1")
    _check(0.0 <= e.defect_threshold <= 1.0, "eval.defect_threshold", e.defect_threshold, "0..1")
    _check(e.batch_size >= 1, "eval.batch_size", e.batch_size, "an integer >= 1")
    _check(e.warmup_iters >= 0, "eval.warmup_iters", e.warmup_iters, "an integer >= 0")
    return cfg


def _default() -> RunConfig:
    # The default preset: about 10 minutes of training on 2 idle cores (0.7 s per step of 4 images
    # measured); pass --minutes to fit a busier machine, the schedule then re-plans to fit.
    # Long side 640 (2446x1000 -> 640x256) keeps knots of a few pixels visible.
    return RunConfig(
        model=ModelConfig(),
        data=DataConfig(max_size=640, num_workers=1),
        train=TrainConfig(batch_size=4, max_steps=800, warmup_steps=50, checkpoint_every=100),
    )


def _full() -> RunConfig:
    # Full resolution on a GPU: 2446x1000 -> 2432x992, the paper's setting.
    return RunConfig(
        model=ModelConfig(backbone="resnet50", fpn_channels=128, head_convs=4),
        data=DataConfig(max_size=2446, num_workers=8),
        train=TrainConfig(
            lr=2e-4, batch_size=8, max_steps=30000, warmup_steps=1000, checkpoint_every=1000
        ),
    )


def _tiny() -> RunConfig:
    # Tests: seconds on a CPU, no worker processes, no TensorBoard.
    return RunConfig(
        model=ModelConfig(width=8, fpn_channels=16, strides=(8, 16, 32), embed_dim=4),
        data=DataConfig(max_size=128, num_workers=0),
        train=TrainConfig(
            batch_size=2,
            max_steps=4,
            warmup_steps=2,
            checkpoint_every=2,
            log_every=1,
            amp=False,
            device="cpu",
            tensorboard=False,
        ),
        eval=EvalConfig(batch_size=2, warmup_iters=1),
    )


#: name -> factory of a fresh config (fresh: presets must not share mutable state).
PRESETS: dict[str, Callable[[], RunConfig]] = {
    "default": _default,
    "full": _full,
    "tiny": _tiny,
}


def preset(name: str) -> RunConfig:
    """A fresh copy of a named preset.

    Raises:
        ConfigError: unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
