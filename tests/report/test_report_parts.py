"""The report's parts on their own: PR curves and per-class AP against pycocotools'
summary, latency statistics, masks in every form, drawing, best/worst choice, HtmlReport's
additions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from report_testdata import CATS

from fabricdet.data.formats.rle import encode_mask
from fabricdet.metrics import Predictions, coco_metrics
from fabricdet.report.confusion import ImageOutcome
from fabricdet.report.gallery import as_mask, best_and_worst, draw
from fabricdet.report.html import PNG_SIGNATURE, HtmlReport
from fabricdet.report.pr_curves import coco_curves, plot_pr_curves
from fabricdet.report.speed import LatencyStats, plot_latency


def _ground_truth_as_predictions(ds, drop_image: int | None = None) -> Predictions:
    rows = [
        (r.image_id, i.category_id, i.box)
        for r in ds.images
        for i in r.instances
        if r.image_id != drop_image
    ]
    ids, cats, boxes = zip(*rows, strict=True)
    return Predictions(np.array(ids), np.array(cats), np.array(boxes), np.full(len(ids), 0.9))


def test_curves_give_pycocotools_per_class_ap(painted):
    preds = _ground_truth_as_predictions(painted, drop_image=2)  # loses a hole and a stain
    curves = coco_curves(painted, preds)
    official = coco_metrics(painted, preds).per_class
    assert curves.category_ids == (1, 2, 3)
    assert curves.precision.shape == (10, 101, 3)
    for cid, ap in official.items():
        assert curves.ap(cid) == pytest.approx(ap)
    assert curves.ap(2) == 1.0 and curves.ap(1, 0.5) < 1.0
    assert plot_pr_curves(curves, {c.id: c.name for c in CATS}).startswith(PNG_SIGNATURE)


def test_curves_without_detections_or_ground_truth(painted):
    curves = coco_curves(painted, Predictions.empty())
    assert curves.ap(1) == 0.0
    normal = type(painted)(painted.root, painted.categories, painted.images[4:])  # no objects
    empty = coco_curves(normal, Predictions.empty())
    assert math.isnan(empty.ap(1))
    assert plot_pr_curves(empty, {}).startswith(PNG_SIGNATURE)


def test_latency_stats():
    s = LatencyStats.of([1.0, 2.0, 3.0, float("nan")])
    assert (s.count, s.mean, s.median, s.max) == (3, 2.0, 2.0, 3.0)
    assert LatencyStats.of([]).count == 0 and math.isnan(LatencyStats.of([]).mean)
    assert plot_latency([]).startswith(PNG_SIGNATURE)
    assert plot_latency([5.0, 6.0]).startswith(PNG_SIGNATURE)


def test_masks_in_every_form_give_the_same_pixels():
    m = np.zeros((6, 8), bool)
    m[1:4, 2:5] = True
    for form in (encode_mask(m), m, m.astype(np.float32) * 0.9, torch.from_numpy(m)[None].float()):
        assert np.array_equal(as_mask(form), m)


def test_draw_scales_and_leaves_the_image_alone():
    image = np.zeros((50, 100, 3), np.uint8)
    mask = np.zeros((50, 100), bool)
    mask[10:20, 10:30] = True
    out = draw(
        image, [], np.array([[10, 10, 30, 20]]), np.array([1]), np.array([0.8]),
        ["hole", "knot"], [encode_mask(mask)], width=200,
    )  # fmt: skip
    assert out.shape == (100, 200, 3) and out.any() and not image.any()
    assert out[30, 40].any()  # the mask, scaled by 2, tints (20..40, 20..60)


def test_best_and_worst_never_overlap():
    o = [
        ImageOutcome(1, 2, 0, 0, 0, 2),  # perfect
        ImageOutcome(2, 0, 1, 1, 1, 2),  # three errors
        ImageOutcome(3, 1, 0, 0, 1, 2),  # one error
        ImageOutcome(4, 0, 0, 0, 0, 0),  # normal, clean: neither
    ]
    best, worst = best_and_worst(o, 2)
    assert [b.image_id for b in worst] == [2, 3]
    assert [b.image_id for b in best] == [1]


def test_html_report_additions_keep_the_old_output():
    r = HtmlReport("t")
    r.heading("Plain")
    r.heading("Anchored", anchor="here")
    r.image(np.zeros((4, 4, 3), np.uint8), "black")
    html = r.render()
    assert "<h2>Plain</h2>" in html and '<h2 id="here">Anchored</h2>' in html
    assert html.count('src="data:image/png;base64,') == 1
    with pytest.raises(ValueError, match="PNG signature"):
        r.png(b"GIF89a", "not a png")
