"""Confusion matrix: the matching rule (own class preferred, by score, one object per
detection), background row and column, crowd regions, per-image outcomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.crowd import CrowdImageRecord
from fabricdet.metrics import Predictions
from fabricdet.report.confusion import ImageOutcome, confusion, match_detections

CATS = (Category(1, "hole"), Category(2, "knot"))
A = (0.0, 0.0, 10.0, 10.0)
B = (20.0, 0.0, 30.0, 10.0)


def _dataset(*records: ImageRecord) -> DetectionDataset:
    return DetectionDataset(Path("."), CATS, list(records))


def _preds(rows: list[tuple[int, int, tuple[float, ...], float]]) -> Predictions:
    ids, cats, boxes, scores = zip(*rows, strict=True) if rows else ((), (), (), ())
    return Predictions(np.array(ids), np.array(cats), np.array(boxes).reshape(-1, 4), scores)


def test_matching_prefers_the_own_class_then_the_best_overlap():
    gt = np.array([A, A])  # two objects on the same spot, classes 1 and 2
    claimed = match_detections(
        gt, np.array([1, 2]), np.array([A, A, A]), np.array([2, 2, 1]), np.array([0.9, 0.8, 0.7])
    )
    # The first class-2 detection takes the class-2 object; the second finds only the class-1
    # object left and claims it (a confusion); the class-1 detection finds nothing left.
    assert claimed.tolist() == [1, 0, -1]


def test_matching_empty_inputs():
    none = np.zeros((0, 4))
    assert match_detections(
        none, np.zeros(0), np.array([A]), np.array([1]), np.ones(1)
    ).tolist() == [-1]
    assert match_detections(np.array([A]), np.array([1]), none, np.zeros(0), np.zeros(0)).size == 0


def test_counts_background_and_outcomes():
    ds = _dataset(
        ImageRecord(1, "1.png", 40, 20, [Instance(A, 1), Instance(B, 2)]),
        ImageRecord(2, "2.png", 40, 20, [Instance(A, 1)]),
        ImageRecord(3, "3.png", 40, 20, []),
    )
    preds = _preds([
        (1, 1, A, 0.9),  # right
        (1, 1, B, 0.8),  # knot called hole
        (2, 2, B, 0.7),  # on nothing; the hole of image 2 is missed
        (3, 2, A, 0.6),  # on nothing, in a normal image
        (3, 1, A, 0.1),  # below the threshold: not counted
    ])  # fmt: skip
    m = confusion(ds, preds, score_threshold=0.5)
    # rows: hole, knot, background (ground truth); columns: predicted.
    assert m.counts.tolist() == [[1, 0, 1], [1, 0, 0], [0, 2, 0]]
    assert m.images == (
        ImageOutcome(1, correct=1, confused=1, false_positives=0, missed=0, num_gt=2),
        ImageOutcome(2, correct=0, confused=0, false_positives=1, missed=1, num_gt=1),
        ImageOutcome(3, correct=0, confused=0, false_positives=1, missed=0, num_gt=0),
    )
    assert m.top_confusions(2) == [(None, 2, 2), (1, None, 1)]
    assert m.images[0].f1 == 0.5 and m.images[1].errors == 2


def test_detections_on_crowd_regions_are_ignored():
    rec = CrowdImageRecord(1, "1.png", 40, 20, [Instance(A, 1)], crowd=[Instance(B, 2)])
    m = confusion(_dataset(rec), _preds([(1, 1, A, 0.9), (1, 2, (21, 1, 29, 9), 0.9)]))
    assert m.counts.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_no_predictions():
    ds = _dataset(ImageRecord(1, "1.png", 40, 20, [Instance(A, 2)]))
    m = confusion(ds, Predictions.empty())
    assert m.counts.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0]]
