"""Mask IoU and boundary IoU on hand-made masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from metrics_testdata import CATS, masked_instance, rect_mask

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats.rle import encode_mask
from fabricdet.metrics import (
    Predictions,
    boundary_iou,
    instance_mask_metrics,
    mask_iou,
    mask_to_boundary,
)
from fabricdet.metrics.mask_metrics import rle_boundary_iou

H, W = 20, 20


def test_mask_to_boundary_counts():
    sq = rect_mask(H, W, 5, 5, 15, 15)  # 10x10 = 100 px
    assert mask_to_boundary(sq, 1).sum() == 100 - 8 * 8  # a 1 px ring: 36
    assert mask_to_boundary(sq, 2).sum() == 100 - 6 * 6  # a 2 px ring: 64
    line = rect_mask(H, W, 2, 7, 18, 8)  # one pixel thick: all of it is boundary
    assert np.array_equal(mask_to_boundary(line, 2), line.astype(bool))
    edge = rect_mask(H, W, 0, 0, 20, 20)  # image borders count as contour
    assert mask_to_boundary(edge, 1).sum() == 400 - 18 * 18


def test_shifted_square_by_hand():
    gt = rect_mask(H, W, 5, 5, 15, 15)
    pr = rect_mask(H, W, 6, 5, 16, 15)  # shifted right by one pixel
    assert mask_iou(gt, pr) == pytest.approx(90 / 110)
    # 1 px rings of 36 px each; they share the top and bottom rows for x = 6..14 (9 + 9 px);
    # the side columns (x = 5, 14 vs 6, 15, rows 6..13) do not meet: 18 / (36 + 36 - 18).
    assert boundary_iou(gt, pr, d=1) == pytest.approx(18 / 54)
    assert boundary_iou(gt, gt, d=2) == 1.0
    thin_gt, thin_pr = rect_mask(H, W, 2, 7, 18, 8), rect_mask(H, W, 4, 7, 18, 8)
    assert boundary_iou(thin_gt, thin_pr) == pytest.approx(mask_iou(thin_gt, thin_pr))


def test_cropped_equals_full_image():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = 40, 90
        a = np.zeros((h, w), np.uint8)
        b = np.zeros((h, w), np.uint8)
        for m in (a, b):
            x1, y1 = rng.integers(0, w - 5), rng.integers(0, h - 3)
            m[y1 : y1 + rng.integers(1, 30), x1 : x1 + rng.integers(1, 40)] = 1
        for d in (1, 2, 3):
            full = boundary_iou(a, b, d)
            assert rle_boundary_iou(encode_mask(a), encode_mask(b), d) == pytest.approx(full)


def test_instance_metrics():
    g1 = rect_mask(H, W, 0, 0, 4, 4)
    g2 = rect_mask(H, W, 5, 5, 15, 15)
    p2 = rect_mask(H, W, 6, 5, 16, 15)
    ds = DetectionDataset(
        Path("."),
        CATS,
        [ImageRecord(1, "a.jpg", W, H, [masked_instance(1, g1), masked_instance(2, g2)])],
    )
    masks = (encode_mask(g1), encode_mask(p2), encode_mask(g2))
    p = Predictions(
        np.array([1, 1, 1]),
        np.array([1, 2, 1]),  # the exact copy of g2 has the wrong class: not a match for it
        np.array([[0, 0, 4, 4], [6, 5, 16, 15], [5, 5, 15, 15]], dtype=float),
        np.array([0.9, 0.8, 0.7]),
        masks,
    )
    m = instance_mask_metrics(ds, p, d=1)
    assert m.num_instances == 2
    assert m.miou == pytest.approx((1 + 90 / 110) / 2)
    assert m.boundary_iou == pytest.approx((1 + 1 / 3) / 2)
    # above the score threshold only the first prediction is left: g2 goes unmatched (0)
    m = instance_mask_metrics(ds, p, d=1, score_threshold=0.85)
    assert m.miou == pytest.approx(0.5) and m.boundary_iou == pytest.approx(0.5)
