"""One interface for every NMS method, drop-in compatible with ``torchvision.ops.batched_nms``.

>>> keep = batched_nms(boxes, scores, labels, 0.5, method="sinkhorn")

returns the kept indices sorted by decreasing score, like torchvision. With
``return_result=True`` it returns an :class:`NMSResult` that also carries each kept detection's
output score (rescored by Soft-NMS and Matrix NMS, fused by WBF) and output box (fused by WBF
and SinkhornNMS). Method-specific options are keyword arguments, passed through.

``method="sinkhorn"`` solves SinkhornNMS on the sparse edge list of neighbouring same-class
boxes (:mod:`fabricdet.ops.sparse_sinkhorn_nms`); ``dense=True`` solves it on every same-class
pair instead (the reference it is tested against). Appearance embeddings go in through
``embeddings=``; the other methods ignore them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torchvision
from torch import Tensor

from fabricdet.ops.boxes import check_finite
from fabricdet.ops.classic_nms import diou_nms, matrix_nms, soft_nms, weighted_box_fusion
from fabricdet.ops.sinkhorn_nms import SinkhornNMS
from fabricdet.ops.sparse_sinkhorn_nms import sparse_sinkhorn_nms

NMS_METHODS: tuple[str, ...] = ("greedy", "soft", "matrix", "diou", "wbf", "sinkhorn")


class NMSResult(NamedTuple):
    """Kept detections, sorted by decreasing ``scores``.

    Attributes:
        keep (Tensor[K] int64): indices into the input.
        scores (Tensor[K]): output scores.
        boxes (Tensor[K, 4]): output boxes.
    """

    keep: Tensor
    scores: Tensor
    boxes: Tensor


def _validate(boxes: Tensor, scores: Tensor, idxs: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1] or idxs.shape != boxes.shape[:1]:
        raise ValueError(
            f"scores and idxs must have shape [{boxes.shape[0]}], got "
            f"{tuple(scores.shape)} and {tuple(idxs.shape)}"
        )
    check_finite("boxes", boxes)
    check_finite("scores", scores)


def _group_by_class(idxs: Tensor) -> tuple[Tensor, Tensor]:
    """Pad the candidates of each class into rows of a ``[G, n_max]`` index table.

    Returns:
        index (Tensor[G, n_max] int64): candidate indices, 0 where padded.
        valid (Tensor[G, n_max] bool).
    """
    _, group, counts = torch.unique(idxs, return_inverse=True, return_counts=True)
    order = torch.sort(group, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    sorted_group = group[order]
    position = torch.arange(len(idxs), device=idxs.device) - starts[sorted_group]
    n_max = int(counts.max())  # host sync: this functional API returns variable sizes anyway
    index = torch.zeros(len(counts), n_max, dtype=torch.long, device=idxs.device)
    valid = torch.zeros(len(counts), n_max, dtype=torch.bool, device=idxs.device)
    index[sorted_group, position] = order
    valid[sorted_group, position] = True
    return index, valid


def sinkhorn_batched_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float,
    *,
    embeddings: Tensor | None = None,
    dense: bool = False,
    **options: Any,
) -> NMSResult:
    """SinkhornNMS per class, every candidate its own slot; returns the hard decode.

    Args:
        boxes (Tensor[N, 4]), scores (Tensor[N]), idxs (Tensor[N] int64): as in batched_nms.
        embeddings (Tensor[N, D], optional): appearance embeddings.
        dense: solve each class on all its pairs (one row of a padded batch per class, the
            :class:`SinkhornNMS` module itself) rather than on neighbourhood edges. Options the
            sparse path lacks (``max_slots``, ``solver_mode="log"``) also take this path.
        **options: :class:`SinkhornNMS` options.
    """
    if boxes.numel() == 0:
        empty = torch.empty(0, dtype=torch.long, device=boxes.device)
        return NMSResult(empty, scores[:0], boxes[:0])
    if embeddings is not None:
        if embeddings.dim() != 2 or embeddings.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"embeddings must have shape [{boxes.shape[0]}, D], got {tuple(embeddings.shape)}"
            )
        check_finite("embeddings", embeddings)
    sparse_ok = options.get("max_slots") is None and options.get("solver_mode") != "log"
    backend = options.pop("backend", "auto")
    if not dense and sparse_ok:
        for name in ("max_slots", "solver_mode"):
            options.pop(name, None)
        options.pop("grad", None)  # eval decode: no gradients
        with torch.no_grad():
            return NMSResult(*sparse_sinkhorn_nms(
                boxes, scores, idxs, iou_threshold, embeddings=embeddings, backend=backend,
                **options,
            ))  # fmt: skip
    module = SinkhornNMS(iou_threshold=iou_threshold, class_agnostic=True, **options)
    index, valid = _group_by_class(idxs)
    emb = None if embeddings is None else embeddings[index]
    with torch.no_grad():
        out = module(boxes[index], scores[index], embeddings=emb, mask=valid)
    keep_mask = out.keep
    assert keep_mask is not None  # the module decodes by default
    keep = torch.gather(index, 1, out.slot_index)[keep_mask]
    kept_scores = out.scores[keep_mask]
    order = torch.sort(kept_scores, descending=True, stable=True).indices
    return NMSResult(keep[order], kept_scores[order], out.boxes[keep_mask][order])


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float,
    method: str = "greedy",
    *,
    return_result: bool = False,
    embeddings: Tensor | None = None,
    **options: Any,
) -> Tensor | NMSResult:
    """Class-wise NMS by ``method``; boxes of different ``idxs`` never suppress each other.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): scores; NaN or inf raise a ValueError.
        idxs (Tensor[N] int64): class (or image-and-class) index of each box.
        iou_threshold: overlap threshold (for Gaussian Soft-NMS and Matrix NMS, unused: they
            decay rather than threshold).
        method: one of :data:`NMS_METHODS`.
        return_result: return an :class:`NMSResult` instead of the indices alone.
        embeddings (Tensor[N, D], optional): appearance embeddings, used by ``"sinkhorn"``
            (ignored by the other methods, so a detector can switch methods freely).
        **options: method options (e.g. ``kernel="linear"`` for Soft-NMS, ``eps=0.05`` for
            SinkhornNMS).

    Returns:
        keep (Tensor[K] int64), indices sorted by decreasing output score; or an NMSResult.
    """
    _validate(boxes, scores, idxs)
    if method == "greedy":
        keep = torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)
        result = NMSResult(keep, scores[keep], boxes[keep])
    elif method == "soft":
        result = NMSResult(*soft_nms(boxes, scores, idxs, iou_threshold, **options))
    elif method == "matrix":
        result = NMSResult(*matrix_nms(boxes, scores, idxs, **options))
    elif method == "diou":
        result = NMSResult(*diou_nms(boxes, scores, idxs, iou_threshold))
    elif method == "wbf":
        result = NMSResult(*weighted_box_fusion(boxes, scores, idxs, iou_threshold, **options))
    elif method == "sinkhorn":
        result = sinkhorn_batched_nms(
            boxes, scores, idxs, iou_threshold, embeddings=embeddings, **options
        )
    else:
        raise ValueError(f"unknown NMS method {method!r}; choose one of {', '.join(NMS_METHODS)}")
    return result if return_result else result.keep
