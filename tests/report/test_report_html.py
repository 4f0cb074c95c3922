"""The report that ``fabricdet eval --report`` writes, read back without a browser: every
image an embedded PNG, every section there, nothing loaded from outside, numbers that agree
with the evaluation's own."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from report_html_parse import parse_report, png_bytes

from fabricdet.metrics import Predictions
from fabricdet.report.evaluation import SECTIONS, write_eval_report
from fabricdet.report.html import PNG_SIGNATURE

RUNS = ["mask_run", "box_run"]


@pytest.fixture(params=RUNS)
def run(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


def test_every_image_is_a_valid_embedded_png(run):
    report = parse_report(run.report.read_text(encoding="utf-8"))
    # PR curves, confusion, latency, and the gallery (best and worst images).
    assert len(report.images) >= 5
    for src, alt in report.images:
        data = png_bytes(src)
        assert data.startswith(PNG_SIGNATURE), alt
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape[0] > 0 and image.shape[1] > 0, alt


def test_every_section_is_there_and_nothing_comes_from_outside(run):
    report = parse_report(run.report.read_text(encoding="utf-8"))
    assert set(SECTIONS) <= set(report.ids)
    assert {"Best images", "Worst images"} <= set(report.headings)
    assert all(ref.startswith("data:image/png;base64,") for ref in report.references)
    assert not report.tags & {"script", "link", "iframe", "object"}


def test_the_tables_agree_with_the_evaluation(mask_run):
    report = parse_report(mask_run.report.read_text(encoding="utf-8"))
    per_class = next(t for t in report.tables if t[0][:2] == ["class", "id"])
    for name, _id, objects, _dets, ap, *_ in per_class[1:]:
        assert float(ap) == pytest.approx(mask_run.result["per_class"][name]["coco_ap"], abs=5e-4)
        n = sum(i.category_id == int(_id) for r in mask_run.dataset.images for i in r.instances)
        assert int(objects) == n
    summary = {row[0]: row[1] for row in report.tables[0][1:]}
    assert summary["NMS"] == "greedy" and summary["split"] == "val"
    assert summary["images (with defects)"] == "6 (4)"
    # The confusion of PAINTED: one hole called a knot, one hole missed, two grey squares.
    top = next(t for t in report.tables if t[0] == ["ground truth", "predicted", "count"])
    assert sorted(map(tuple, top[1:])) == [
        ("background", "hole", "2"),
        ("hole", "background", "1"),
        ("hole", "knot", "1"),
    ]


def test_masks_are_drawn_when_predicted(mask_run, box_run):
    assert "(with their masks)" in mask_run.report.read_text(encoding="utf-8")
    assert "(with their masks)" not in box_run.report.read_text(encoding="utf-8")


def test_eval_output_is_unchanged_by_the_report(mask_run):
    assert mask_run.stdout.count("\n") == 1  # still exactly one JSON object on stdout
    assert mask_run.result["nms"] == "greedy" and "files" in mask_run.result


def test_a_model_that_finds_nothing_still_gets_a_report(painted, tmp_path):
    summary = {"model": "m.pt", "split": "val", "nms": "greedy", "defect_threshold": 0.5}
    path = tmp_path / "empty.html"
    write_eval_report(path, summary, painted, Predictions.empty(), [])
    report = parse_report(path.read_text(encoding="utf-8"))
    assert set(SECTIONS) <= set(report.ids)
    assert all(png_bytes(src).startswith(PNG_SIGNATURE) for src, _ in report.images)
    assert "none" in path.read_text(encoding="utf-8")  # no best image: nothing was found
