"""The detector as one exportable graph: network, candidates and SinkhornNMS, padded outputs.

Contract
--------
Input ``images`` (Tensor[B, 3, H, W] float32): RGB in [0, 1], already resized by the caller
(as :func:`fabricdet.engine.transforms.resize_image` does) and padded to a common size, with
H and W multiples of the model's largest stride. B, H and W are dynamic. The whole input counts
as image: candidates come from every location and boxes are clipped to ``(W, H)``, so pad with
0.5 (mid-grey, what the eager detector's own padding reads as) and expect detections near the
padding of the smaller images of a mixed batch; :mod:`fabricdet.export.runtime` batches only
images of one size, which keeps it exact.

Outputs, fixed ``max_det`` rows per image; for image ``b`` with ``n = num_detections[b]``:

- ``boxes`` (Tensor[B, max_det, 4] float32): xyxy in input pixels;
- ``scores`` (Tensor[B, max_det] float32): non-increasing over the first ``n`` rows;
- ``labels`` (Tensor[B, max_det] int64): 0-based model labels (``categories[label]``);
- ``num_detections`` (Tensor[B] int64): ``0 <= n <= max_det``.

Rows ``n..max_det-1`` hold zeros (boxes, scores and labels alike), so ``label 0, score 0`` past
the count is padding, never a detection. ``boxes[b, :n]``, ``scores[b, :n]``, ``labels[b, :n]``
are the eager detector's ``model([image])`` with ``nms_method = "sinkhorn"`` (and its
``medoid_boxes``, computed for the ``max_det`` rows against every candidate): the dense solve
(one problem per image, a dustbin pair per class, so the classes' problems are independent)
stands in for the sparse one (one problem per class). They agree to float rounding, except on
rare inputs: the sparse solve prunes pairs below the similarity floor, whose mass the dense
solve holds under ``exp(-20)`` of the row's dustbin entry; exact score ties break apart.

Static shapes are what make it exportable: ``select_candidates`` takes a fixed top-k (the
input must offer at least ``topk_candidates`` (location, class) pairs:
:func:`min_input_locations`), SinkhornNMS runs its fixed number of iterations on every
candidate, and the kept slots are moved to the front by a top-k rather than a boolean index.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricdet.errors import FabricdetError
from fabricdet.models.candidates import Candidates, select_candidates
from fabricdet.models.config import ModelConfig
from fabricdet.models.detector import PIXEL_MEAN, PIXEL_STD, FabricDetector
from fabricdet.ops.medoid import cluster_members, medoid_index
from fabricdet.ops.sinkhorn_nms import DECODE_ITERS

OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "num_detections")


class ExportError(FabricdetError):
    """A model cannot be exported, or an exported file cannot be read or run."""


def min_input_locations(detector: FabricDetector) -> int:
    """Locations an input must have (``sum over strides of (H / s) * (W / s)``) so that
    ``locations * num_classes >= topk_candidates``: the graph's top-k has a fixed count."""
    return -(-detector.cfg.topk_candidates // max(detector.num_classes, 1))


class ExportableDetector(nn.Module):
    """``images -> (boxes, scores, labels, num_detections)``, the contract of the module
    docstring, on the detector's own modules (backbone, neck, head, SinkhornNMS).

    Args:
        detector: a :class:`~fabricdet.models.FabricDetector` (switched to eval mode).
        max_det: rows per image (default: the model's ``detections_per_img``).

    Raises:
        ExportError: not a FabricDetector, or ``max_det < 1``.
    """

    def __init__(self, detector: nn.Module, max_det: int | None = None) -> None:
        super().__init__()
        if not isinstance(detector, FabricDetector):
            raise ExportError(
                f"only the fabricdet detector can be exported, not {type(detector).__name__}; "
                "export a model.pt written by `fabricdet train` with the default model"
            )
        cfg = detector.cfg
        self.max_det = cfg.detections_per_img if max_det is None else int(max_det)
        if self.max_det < 1:
            raise ExportError(f"max_det must be >= 1, got {self.max_det}")
        self.detector = detector.eval()
        self.topk = cfg.topk_candidates
        self.score_thresh = cfg.score_thresh
        # The eval decode of FabricDetector.postprocess: the detector's own module and options,
        # with eps at the end of the training anneal (a freshly loaded detector's module still
        # holds eps_start) and every candidate its own slot (the training cap on slots is a
        # training-time saving; with it, low-ranked candidates could never survive).
        nms = copy.deepcopy(detector.sinkhorn)
        nms.eps = cfg.sinkhorn.eps
        nms.num_iters = cfg.sinkhorn.num_iters
        nms.fuse_boxes = cfg.sinkhorn.fuse_boxes  # the training module always fuses
        nms.appearance_capacity = cfg.sinkhorn.appearance_capacity  # training's may differ
        nms.max_slots = None
        nms.edges = False  # a static graph: the dense solve
        nms.decode_iters = DECODE_ITERS  # the training module skips the hard decode
        self.nms = nms

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the largest stride)."""
        return int(self.detector.size_divisor)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detections of a padded batch; see the module docstring for the contract.

        Args:
            images (Tensor[B, 3, H, W]): float in [0, 1].

        Returns:
            boxes (Tensor[B, max_det, 4]), scores (Tensor[B, max_det]),
            labels (Tensor[B, max_det] int64), num_detections (Tensor[B] int64).
        """
        det = self.detector
        x = (images - PIXEL_MEAN) / PIXEL_STD
        feats = det.features(x)
        out = det.head(feats)
        cand = select_candidates(out, _input_size(images), self.topk, self.score_thresh)
        if det.rescores:
            cand, _ = det.rescored(cand, out, feats)
        res = self.nms(cand.boxes, cand.scores, cand.labels, det._embeddings(cand), cand.mask)
        assert res.keep is not None  # decode_iters > 0 (set in __init__)
        if not det.cfg.medoid_boxes:
            return compact_kept(res.keep, res.boxes, res.scores, res.labels, self.max_det)
        # The medoid's clusters form around the seeds' own boxes, as in the eager decode.
        seeds = torch.gather(cand.boxes, 1, res.slot_index.unsqueeze(-1).expand(-1, -1, 4))
        boxes, scores, labels, count = compact_kept(
            res.keep, seeds, res.scores, res.labels, self.max_det
        )
        return _medoids(boxes, labels, count, cand, det.cfg), scores, labels, count


def _medoids(
    centres: Tensor, labels: Tensor, count: Tensor, cand: Candidates, cfg: ModelConfig
) -> Tensor:
    """:func:`fabricdet.ops.medoid.medoid_boxes` of the rows of :func:`compact_kept`, with
    static shapes: every row against every candidate slot.

    Args:
        centres (Tensor[B, D, 4]), labels (Tensor[B, D]), count (Tensor[B]): the kept rows.

    Returns:
        Tensor[B, D, 4]: each row's medoid box, zeros past ``count``.
    """
    member = cluster_members(
        centres, labels, cand.boxes, cand.labels, cfg.sinkhorn.iou_threshold
    ) & cand.mask.unsqueeze(1)
    weights = torch.where(cand.mask, cand.scores.to(cand.boxes.dtype) ** cfg.medoid_power, 0.0)
    index = medoid_index(member, cand.boxes, weights)
    medoid = torch.gather(cand.boxes, 1, index.unsqueeze(-1).expand(-1, -1, 4))
    medoid = torch.where(member.any(-1, keepdim=True), medoid, centres)  # zero-area: no member
    valid = torch.arange(centres.shape[1], device=count.device).unsqueeze(0) < count.unsqueeze(1)
    return torch.where(valid.unsqueeze(-1), medoid, torch.zeros_like(medoid))


def _input_size(images: Tensor) -> list[tuple[int, int]] | Tensor:
    """``(H, W)`` of the batch, one entry for all images (select_candidates broadcasts it).

    torch.export and eager take the symbolic / real ints; ``torch.jit.trace`` would freeze
    ints into the graph, so it gets the shape as a tensor (``_shape_as_tensor`` is what
    torchvision uses for this; torch.export rejects it, hence two paths).
    """
    if torch.jit.is_tracing():
        return torch._shape_as_tensor(images)[2:].unsqueeze(0)  # Tensor[1, 2]
    return [(images.shape[-2], images.shape[-1])]


def compact_kept(
    keep: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor, max_det: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The kept slots first, in slot order, ``max_det`` rows, zeros past the count.

    SinkhornNMS' slots are in decreasing seed-score order, so slot order is score order.

    Args:
        keep (Tensor[B, K] bool), boxes (Tensor[B, K, 4]), scores (Tensor[B, K]),
        labels (Tensor[B, K] int64): per slot.

    Returns:
        boxes (Tensor[B, max_det, 4]), scores (Tensor[B, max_det]),
        labels (Tensor[B, max_det] int64), count (Tensor[B] int64).
    """
    k_slots = keep.shape[1]
    k = min(max_det, k_slots)
    # A top-k on "kept, earlier first" keys gathers the kept slots in order with a static
    # shape (a boolean index would give a data-dependent one). Dropped slots tie at 0, which
    # does not matter: they are zeroed below.
    rank = torch.arange(k_slots, 0, -1, device=keep.device)
    key = torch.where(keep, rank, torch.zeros_like(rank))
    order = key.topk(k, dim=1).indices  # [B, k]
    count = keep.sum(1).clamp(max=k)
    valid = torch.arange(k, device=keep.device).unsqueeze(0) < count.unsqueeze(1)  # [B, k]
    out_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
    out_boxes = torch.where(valid.unsqueeze(-1), out_boxes, torch.zeros_like(out_boxes))
    out_scores = torch.gather(scores, 1, order)
    out_scores = torch.where(valid, out_scores, torch.zeros_like(out_scores))
    out_labels = torch.gather(labels, 1, order)
    out_labels = torch.where(valid, out_labels, torch.zeros_like(out_labels))
    if k < max_det:  # fewer candidates than rows: pad to the promised shape
        pad = max_det - k
        out_boxes = F.pad(out_boxes, (0, 0, 0, pad))
        out_scores = F.pad(out_scores, (0, pad))
        out_labels = F.pad(out_labels, (0, pad))
    return out_boxes, out_scores, out_labels, count
