"""Running a trained detector: switching its NMS, timing it, and mapping its outputs back to
the original image.

Shared by evaluation (dataset splits) and inference (loose image files).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.engine.config import ConfigError
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.transforms import Resize, unresize_boxes, unresize_masks
from fabricdet.errors import FabricdetError
from fabricdet.ops.nms import NMS_METHODS


@dataclass(frozen=True)
class RawDetections:
    """One image's detections in original pixels, sorted by decreasing score.

    Attributes:
        boxes (ndarray[K, 4] float32): xyxy.
        scores (ndarray[K] float32).
        labels (ndarray[K] int64): contiguous model labels.
        masks (ndarray[K, H, W] float32 probabilities) or None for a box-only model.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None


def check_nms(method: str) -> str:
    """``method`` if it is a known NMS method.

    Raises:
        ConfigError: listing the valid methods.
    """
    if method not in NMS_METHODS:
        raise ConfigError(f"unknown NMS method {method!r}; choose one of {', '.join(NMS_METHODS)}")
    return method


def set_nms(model: nn.Module, method: str) -> None:
    """Switch the model's NMS (its ``nms_method`` attribute) to ``method``.

    Raises:
        ConfigError: unknown method.
        FabricdetError: the model has no switchable NMS.
    """
    check_nms(method)
    if not hasattr(model, "nms_method"):
        raise FabricdetError(
            f"{type(model).__name__} has no nms_method attribute, so its NMS cannot be "
            "switched; evaluate without --nms"
        )
    model.nms_method = method


@contextmanager
def nms_switched(model: nn.Module, method: str | None) -> Iterator[None]:
    """The model's NMS is ``method`` inside the block (``None``: left as it is), its own after.

    Raises:
        as :func:`set_nms`.
    """
    original = getattr(model, "nms_method", None)
    if method is not None:
        set_nms(model, method)
    try:
        yield
    finally:
        if original is not None:
            model.nms_method = original


#: Run-config keys that change inference only: the NMS options and thresholds, the candidate
#: and detection counts, whether the box-quality head rescores, the kept boxes (medoids or
#: the method's own), the evaluation settings.
#: Everything else describes the trained network, which the weights fix.
INFERENCE_KEYS: tuple[str, ...] = (
    "model.sinkhorn.",
    "model.box_quality_rescore",
    "model.medoid_boxes",
    "model.medoid_power",
    "model.score_thresh",
    "model.topk_candidates",
    "model.detections_per_img",
    "eval.",
)


def apply_inference_overrides(loaded: LoadedModel, overrides: Sequence[str]) -> None:
    """Apply ``key=value`` overrides of inference settings to a loaded model, in place.

    The detector reads its options from ``loaded.config.model`` at every call, so the change
    takes effect at once (e.g. ``model.sinkhorn.fuse_boxes=false`` evaluates the kept seeds'
    own boxes without retraining).

    Raises:
        ConfigError: a key outside :data:`INFERENCE_KEYS`, a model key for an exported
            ``.onnx`` (its post-processing is fixed in the graph), or an invalid value.
    """
    if not overrides:
        return
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith(INFERENCE_KEYS) or key.endswith("."):
            raise ConfigError(
                f"{item!r}: evaluation takes inference settings only "
                f"({', '.join(k + '*' if k.endswith('.') else k for k in INFERENCE_KEYS)}); "
                "the rest is fixed by training: retrain to change it"
            )
        if key.startswith("model.") and loaded.path.suffix.lower() == ".onnx":
            raise ConfigError(
                f"{item!r}: {loaded.path} is an exported graph whose post-processing is fixed; "
                "export again from a model.pt evaluated with this setting"
            )
    new = apply_overrides(loaded.config, overrides)
    for key in INFERENCE_KEYS:
        section, _, name = key.rstrip(".").partition(".")
        if section == "model":
            setattr(loaded.config.model, name, getattr(new.model, name))
    loaded.config.eval = new.eval


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without a sync the timer measures the launch only.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def to_original(
    output: Mapping[str, Tensor], resize: Resize, score_threshold: float
) -> RawDetections:
    """One image's model output mapped back to its original pixels.

    Args:
        output: ``boxes`` (Tensor[K, 4], resized pixels), ``scores`` (Tensor[K]), ``labels``
            (Tensor[K]) and optionally ``masks`` (Tensor[K, 1, h, w] or Tensor[K, h, w]).
        score_threshold: detections scoring below it are dropped.
    """
    scores = _numpy(output["scores"]).reshape(-1).astype(np.float32)
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    boxes = unresize_boxes(_numpy(output["boxes"]).reshape(-1, 4)[keep], resize)
    labels = _numpy(output["labels"]).reshape(-1).astype(np.int64)[keep]
    masks = None
    if "masks" in output:
        m = _numpy(output["masks"])
        m = m.reshape(-1, *m.shape[-2:])[keep]
        masks = unresize_masks(m, resize)
    return RawDetections(boxes, scores[keep], labels, masks)


class Runner:
    """Runs a model in eval mode on batches and keeps the latency of what it ran.

    The timed part is the model call (backbone, head and NMS) plus :func:`to_original`;
    reading and resizing images is excluded (it depends on the disk, not on the model).
    """

    def __init__(self, model: nn.Module, device: torch.device, score_threshold: float) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.score_threshold = score_threshold
        self.seconds = 0.0
        self.images = 0

    @torch.inference_mode()
    def __call__(
        self, images: Sequence[Tensor], resizes: Sequence[Resize], timed: bool = True
    ) -> list[RawDetections]:
        """Detections of a batch (``images``: Tensor[3, h, w] each, already resized)."""
        batch = [im.to(self.device) for im in images]
        _sync(self.device)
        start = time.perf_counter()
        outputs = self.model(batch)
        result = [
            to_original(o, r, self.score_threshold) for o, r in zip(outputs, resizes, strict=True)
        ]
        _sync(self.device)
        if timed:
            self.seconds += time.perf_counter() - start
            self.images += len(images)
        return result

    def warm_up(self, images: Sequence[Tensor], resizes: Sequence[Resize], iters: int) -> None:
        """Untimed passes (allocator, caches, cuDNN autotuning) before measuring."""
        for _ in range(iters):
            self(images, resizes, timed=False)

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / self.images if self.images else float("nan")
