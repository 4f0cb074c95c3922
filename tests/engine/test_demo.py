"""The demo pipeline end to end on a tiny budget."""

from __future__ import annotations

from pathlib import Path

from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.demo import DEMO_SIZE, DEMO_STEPS, run_demo
from fabricdet.ops.nms import NMS_METHODS


def test_demo_writes_model_report_and_every_method(tmp_path: Path) -> None:
    results = run_demo(tmp_path, num_images=20, minutes=0.05, progress=False, samples=1)
    assert set(results) == set(NMS_METHODS)
    assert all("coco_ap" in r and "tianchi_score" in r for r in results.values())
    published = load_model(tmp_path / "model.pt")
    # the published model decides "defective" with the threshold calibrated for the report
    threshold = published.config.eval.defect_threshold
    # trained at the frames' own scale, on the demo's schedule (the clock stopped it first)
    assert published.config.data.max_size == max(DEMO_SIZE)
    assert published.config.train.max_steps == DEMO_STEPS > published.step
    assert f"at least {threshold:.3f}" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert threshold == results[published.model.nms_method]["defect_threshold"]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "sinkhorn" in page and page.count("data:image/png;base64,") >= 1
    assert "--minutes 60" in page  # how to go past the demo's budget
    assert f"{published.step} steps (of {DEMO_STEPS}: the time budget ended it sooner)" in page
    # a second run reuses the data and the trained model
    again = run_demo(tmp_path, num_images=20, minutes=0.05, progress=False, samples=1)
    assert again["greedy"]["coco_ap"] == results["greedy"]["coco_ap"]
