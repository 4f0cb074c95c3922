"""The evaluation's hooks for reports: per-image latencies, the capture of what was scored,
one capture per NMS method, and the ``--nms all`` report names."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_testdata import save_flawed

from fabricdet.cli.eval import report_path
from fabricdet.engine import evaluate_all_nms, load_model, predict_dataset
from fabricdet.engine.evaluate import EvalCapture, evaluate


@pytest.fixture(scope="module")
def flawed(painted, tmp_path_factory):
    return load_model(save_flawed(tmp_path_factory.mktemp("hooks") / "model.pt"))


def test_latencies_one_per_image_and_consistent_with_the_mean(flawed, painted):
    ms: list[float] = []
    preds, mean = predict_dataset(flawed, painted, progress=False, latencies_ms=ms)
    assert len(ms) == len(painted.images) and all(v > 0 for v in ms)
    assert sum(ms) / len(ms) == pytest.approx(mean)
    assert len(preds) == 8


def test_capture_holds_what_was_scored(flawed, painted):
    capture = EvalCapture()
    summary = evaluate(flawed, painted, split="val", nms="greedy", progress=False, capture=capture)
    assert capture.dataset is not None and len(capture.dataset.images) == 6
    assert len(capture.predictions) == summary["num_predictions"]
    assert len(capture.latencies_ms) == 6 and capture.device == "cpu"
    assert capture.predictions.has_masks


def test_one_capture_per_method(flawed, painted):
    captures: dict[str, EvalCapture] = {}
    results = evaluate_all_nms(
        flawed, painted, methods=("greedy", "soft"), split="val", progress=False, captures=captures
    )
    assert list(captures) == list(results) == ["greedy", "soft"]
    assert all(len(c.latencies_ms) == 6 for c in captures.values())


def test_report_names_per_method():
    assert report_path(Path("out/r.html"), "soft") == Path("out/r_soft.html")
    assert report_path(None, "soft") is None
