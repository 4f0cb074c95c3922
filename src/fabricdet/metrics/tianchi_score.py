"""The Tianchi 2019 fabric-defect score: ``0.2 * ACC + 0.8 * mAP``.

- ACC: image-level accuracy of "defective vs normal" over every image of the dataset. An
  image is predicted defective when the submission holds a detection for it (with score at
  least ``score_threshold`` when one is given); it is defective when it has an instance.
- mAP: VOC mAP (:mod:`.voc`) averaged over IoU thresholds 0.1, 0.3 and 0.5, using every
  detection whatever the score threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.metrics.predictions import Predictions
from fabricdet.metrics.voc import GroundTruth, best_matches, voc_map

TIANCHI_IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5)


@dataclass(frozen=True)
class TianchiScore:
    """Attributes:
    score: ``0.2 * acc + 0.8 * map``.
    acc: image-level defective/normal accuracy.
    map: VOC mAP averaged over the IoU thresholds.
    map_per_iou: IoU threshold -> VOC mAP at it.
    per_class: category id -> AP averaged over the thresholds (classes in the ground truth).
    """

    score: float
    acc: float
    map: float
    map_per_iou: dict[float, float]
    per_class: dict[int, float]


def image_accuracy(
    dataset: DetectionDataset, predictions: Predictions, score_threshold: float | None = None
) -> float:
    """Defective-vs-normal accuracy over all images (1.0 for a dataset with no images)."""
    if not dataset.images:
        return 1.0
    kept = predictions.image_ids
    if score_threshold is not None:
        kept = kept[predictions.scores >= score_threshold]
    ids = np.array([r.image_id for r in dataset.images], dtype=np.int64)
    predicted = np.isin(ids, kept)
    actual = np.array([bool(r.instances) for r in dataset.images])
    return float(np.mean(predicted == actual))


def best_defect_threshold(dataset: DetectionDataset, predictions: Predictions) -> float:
    """The image-level score threshold that maximises :func:`image_accuracy` on ``dataset``.

    An image counts as defective when its best detection scores at least the threshold. The
    candidates are the images' best scores (and 1 + the highest, which calls every image
    normal); ties in accuracy go to the highest threshold (fewer false alarms). Calibrate on a
    validation split, then apply the threshold to unseen images.
    """
    predictions.check_against(dataset)
    if not dataset.images:
        return 0.5
    ids = np.array([r.image_id for r in dataset.images], dtype=np.int64)
    actual = np.array([bool(r.instances) for r in dataset.images])
    order = np.argsort(ids)
    row = order[np.searchsorted(ids, predictions.image_ids, sorter=order)]
    best = np.full(len(ids), -np.inf)
    np.maximum.at(best, row, predictions.scores.astype(np.float64))
    finite = best[np.isfinite(best)]
    candidates = np.unique(np.append(finite, finite.max() + 1.0 if finite.size else 1.0))
    # defective images scoring >= t plus normal ones below t, for every candidate t at once
    defective, normal = np.sort(best[actual]), np.sort(best[~actual])
    hits = len(defective) - np.searchsorted(defective, candidates, side="left")
    hits = hits + np.searchsorted(normal, candidates, side="left")
    return float(candidates[np.flatnonzero(hits == hits.max())[-1]])


def tianchi_score(
    dataset: DetectionDataset,
    predictions: Predictions,
    *,
    iou_thresholds: Sequence[float] = TIANCHI_IOU_THRESHOLDS,
    score_threshold: float | None = None,
) -> TianchiScore:
    """The Tianchi score of ``predictions`` on ``dataset`` (see the module docstring).

    Raises:
        DataError: predictions for images or categories the dataset does not have.
    """
    predictions.check_against(dataset)
    gt = GroundTruth.of(dataset)
    matches = best_matches(gt, predictions)
    results = {t: voc_map(gt, predictions, t, matches) for t in iou_thresholds}
    mean_map = float(np.mean([r.map for r in results.values()]))
    classes = sorted({c for r in results.values() for c in r.per_class})
    per_class = {c: float(np.mean([r.per_class[c] for r in results.values()])) for c in classes}
    acc = image_accuracy(dataset, predictions, score_threshold)
    return TianchiScore(
        score=0.2 * acc + 0.8 * mean_map,
        acc=acc,
        map=mean_map,
        map_per_iou={t: r.map for t, r in results.items()},
        per_class=per_class,
    )
