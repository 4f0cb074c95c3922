"""Confusion between classes: detections matched to ground truth by IoU, whatever the class.

Per image, detections scoring at least the threshold are taken by decreasing score; each
claims the unclaimed ground-truth object it overlaps most (IoU at least ``iou_threshold``),
preferring one of its own class, so a right detection is never counted as a confusion because
another class's object overlaps it more. The matrix has one extra row and column,
``background``: a detection that claims nothing is a false positive (row background), an object
that nothing claims is missed (column background). Detections on crowd regions (covered by
them for at least ``iou_threshold`` of their area) are ignored, as COCO ignores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.crowd import crowd_of
from fabricdet.metrics.iou import box_area, box_iou
from fabricdet.metrics.predictions import Predictions
from fabricdet.report.plots import figure_png, new_figure

BACKGROUND = "background"


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image's objects and detections.

    Attributes:
        image_id: the image.
        correct: detections that claimed an object of their own class.
        confused: detections that claimed an object of another class.
        false_positives: detections that claimed no object.
        missed: objects that no detection claimed.
        num_gt: the image's objects.
    """

    image_id: int
    correct: int
    confused: int
    false_positives: int
    missed: int
    num_gt: int

    @property
    def errors(self) -> int:
        return self.confused + self.false_positives + self.missed

    @property
    def f1(self) -> float:
        """2 * correct / (detections + objects); 1.0 for an image with neither."""
        total = self.correct + self.confused + self.false_positives + self.num_gt
        return 2 * self.correct / total if total else 1.0


@dataclass(frozen=True)
class Confusion:
    """Counts of (ground-truth class, predicted class) pairs.

    Attributes:
        category_ids (tuple[int, ...]): the K classes; index K is background.
        counts (ndarray[K + 1, K + 1] int64): rows ground truth, columns prediction.
        images (tuple[ImageOutcome, ...]): per image, in dataset order.
        iou_threshold, score_threshold: the matching settings.
    """

    category_ids: tuple[int, ...]
    counts: np.ndarray
    images: tuple[ImageOutcome, ...]
    iou_threshold: float
    score_threshold: float

    def top_confusions(self, n: int = 10) -> list[tuple[int | None, int | None, int]]:
        """The largest off-diagonal cells as ``(true id, predicted id, count)``; ``None``
        stands for background."""
        ids: list[int | None] = [*self.category_ids, None]
        cells = [
            (ids[i], ids[j], int(self.counts[i, j]))
            for i in range(len(ids))
            for j in range(len(ids))
            if i != j and self.counts[i, j] > 0
        ]
        return sorted(cells, key=lambda c: -c[2])[:n]


def match_detections(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """The object each detection claims (see module doc).

    Args:
        gt_boxes (ndarray[G, 4]), boxes (ndarray[N, 4]): xyxy.
        gt_classes (ndarray[G]), classes (ndarray[N]): any class ids.
        scores (ndarray[N]): detections are taken by decreasing score.

    Returns:
        ndarray[N] int64: index into the objects, or -1.
    """
    n = len(boxes)
    claimed = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(gt_boxes) == 0:
        return claimed
    iou = box_iou(boxes, gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        ok = free & (iou[d] >= iou_threshold)
        if not ok.any():
            continue
        same = ok & (gt_classes == classes[d])
        pool = same if same.any() else ok
        g = int(np.argmax(np.where(pool, iou[d], -1.0)))
        claimed[d] = g
        free[g] = False
    return claimed


def _on_crowd(boxes: np.ndarray, crowd: np.ndarray, threshold: float) -> np.ndarray:
    """ndarray[N] bool: detections covered by a crowd region for ``threshold`` of their area."""
    if not len(crowd) or not len(boxes):
        return np.zeros(len(boxes), dtype=bool)
    lt = np.maximum(boxes[:, None, :2], crowd[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], crowd[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = np.maximum(box_area(boxes), 1e-9)[:, None]
    return ((inter / area) >= threshold).any(1)


def confusion(
    dataset: DetectionDataset,
    predictions: Predictions,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
) -> Confusion:
    """Confusion matrix and per-image outcomes of ``predictions`` on ``dataset``."""
    predictions.check_against(dataset)
    ids = tuple(c.id for c in dataset.categories)
    index = {c: k for k, c in enumerate(ids)}
    bg = len(ids)
    counts = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    kept = predictions.select(predictions.scores >= score_threshold)
    rows_of = _rows_by_image(kept.image_ids)
    outcomes = []
    for rec in dataset.images:
        sel = rows_of.get(rec.image_id, np.zeros(0, dtype=np.int64))
        boxes, classes = kept.boxes[sel], kept.category_ids[sel]
        gt_boxes = np.array([i.box for i in rec.instances], dtype=np.float64).reshape(-1, 4)
        gt_classes = np.array([i.category_id for i in rec.instances], dtype=np.int64)
        crowd = np.array([i.box for i in crowd_of(rec)], dtype=np.float64).reshape(-1, 4)
        claimed = match_detections(
            gt_boxes, gt_classes, boxes, classes, kept.scores[sel], iou_threshold
        )
        ignored = (claimed < 0) & _on_crowd(boxes, crowd, iou_threshold)
        correct = confused = fp = 0
        for d in np.flatnonzero(~ignored):
            pred = index[int(classes[d])]
            if claimed[d] < 0:
                counts[bg, pred] += 1
                fp += 1
                continue
            true = index[int(gt_classes[claimed[d]])]
            counts[true, pred] += 1
            if true == pred:
                correct += 1
            else:
                confused += 1
        unclaimed = np.setdiff1d(np.arange(len(gt_classes)), claimed[claimed >= 0])
        for g in unclaimed:
            counts[index[int(gt_classes[g])], bg] += 1
        outcomes.append(
            ImageOutcome(rec.image_id, correct, confused, fp, len(unclaimed), len(gt_classes))
        )
    return Confusion(ids, counts, tuple(outcomes), iou_threshold, score_threshold)


def _rows_by_image(image_ids: np.ndarray) -> dict[int, np.ndarray]:
    """image id -> the row indices of its detections."""
    if not len(image_ids):
        return {}
    order = np.argsort(image_ids, kind="stable")
    uniq, starts = np.unique(image_ids[order], return_index=True)
    return {int(i): part for i, part in zip(uniq, np.split(order, starts[1:]), strict=True)}


def plot_confusion(matrix: Confusion, names: Sequence[str]) -> bytes:
    """Heat map of the counts, shaded by the share of each ground-truth row; PNG bytes.

    Args:
        names: the K class names, in ``matrix.category_ids`` order.
    """
    labels = [*names, BACKGROUND]
    k = len(labels)
    side = min(max(3.5, 0.45 * k + 2.0), 14.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    counts = matrix.counts.astype(np.float64)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the ground-truth row")
    fontsize = 8 if k <= 12 else 6
    for i in range(k):
        for j in range(k):
            if matrix.counts[i, j]:
                colour = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, str(matrix.counts[i, j]), ha="center", va="center",
                        fontsize=fontsize, color=colour)  # fmt: skip
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=fontsize)
    ax.set_yticks(range(k), labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    return figure_png(fig)
