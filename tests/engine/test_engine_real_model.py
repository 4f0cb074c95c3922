"""The engine with the real detector (``fabricdet.models.build_model``): train, evaluate with
every NMS method, detect — the contract the test double stands in for elsewhere."""

from __future__ import annotations

import json

from engine_testdata import tiny

from fabricdet.cli import main
from fabricdet.engine import evaluate_all_nms, load_model, train
from fabricdet.ops.nms import NMS_METHODS


def test_real_detector_trains_evaluates_and_detects(synth, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("train.max_steps=2"), synth, run, progress=False)
    loaded = load_model(run)
    assert loaded.step == 2 and loaded.model.nms_method == "sinkhorn"
    results = evaluate_all_nms(loaded, synth, split="val", progress=False)
    assert list(results) == list(NMS_METHODS)
    assert all(r["ms_per_image"] > 0 and 0 <= r["tianchi_score"] <= 1 for r in results.values())
    images = str(synth.root / "defect_Images")
    assert main(["detect", str(run), images, "--out", str(tmp_path / "det"), "--quiet"]) == 0
    records = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert len(records) == len(list((synth.root / "defect_Images").iterdir()))
    capsys.readouterr()
