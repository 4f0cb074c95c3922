"""The engine with the real detector (``fabricdet.models.build_model``): train, evaluate with
every NMS method, detect — the contract the test double stands in for elsewhere; evaluation
overrides, which the real detector reads at every call."""

from __future__ import annotations

import json

from engine_testdata import tiny

from fabricdet.cli import main
from fabricdet.engine import evaluate_all_nms, load_model, train
from fabricdet.engine.evaluate import calibrate_defect_threshold
from fabricdet.engine.inference import apply_inference_overrides
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


def test_eval_overrides_change_inference_settings_only(synth, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("train.max_steps=2", "model.box_quality=true"), synth, run, progress=False)

    def evaluate_with(*overrides: str) -> dict:
        args = ["eval", str(run), str(synth.root), "--json", "--quiet", "--split", "all"]
        assert main([*args, *overrides]) == 0
        return json.loads(capsys.readouterr().out)

    assert evaluate_with()["num_predictions"] > 0
    # The detector reads its thresholds at every call: an untrained one scores far below 0.99.
    assert evaluate_with("model.score_thresh=0.99")["num_predictions"] == 0
    loaded = load_model(run)
    assert loaded.model.rescores
    overrides = ["model.sinkhorn.fuse_boxes=true", "model.box_quality_rescore=false"]
    medoid = ["model.medoid_boxes=false", "model.medoid_power=1"]
    apply_inference_overrides(loaded, [*overrides, *medoid, "eval.batch_size=2"])
    assert loaded.model.cfg.sinkhorn.fuse_boxes is True and loaded.config.eval.batch_size == 2
    assert loaded.model.cfg.medoid_boxes is False and loaded.model.cfg.medoid_power == 1.0
    assert not loaded.model.rescores
    for bad in ("model.width=8", "train.lr=0.1", "model.sinkhorn."):
        assert main(["eval", str(run), str(synth.root), bad]) == 2
        assert "evaluation takes inference settings only" in capsys.readouterr().err
    assert main(["eval", str(run), str(synth.root), "model.sinkhorn.eps=-1"]) == 2
    assert "model.sinkhorn.eps" in capsys.readouterr().err


def test_eval_calibrates_the_defect_threshold_per_nms_method(synth, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny("train.max_steps=2"), synth, run, progress=False)
    loaded = load_model(run)
    expected = {}
    for method in ("greedy", "wbf"):
        loaded.model.nms_method = method
        expected[method] = calibrate_defect_threshold(loaded, synth, split="all", progress=False)
    args = ["eval", str(run), str(synth.root), "--json", "--quiet", "--split", "all"]
    assert main([*args, "--nms", "all", "--calibrate-on", "all"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {m: results[m]["defect_threshold"] for m in expected} == expected
    assert main([*args, "--nms", "wbf", "--calibrate-on", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["defect_threshold"] == expected["wbf"]
    assert main([*args, "--calibrate-on", "all", "--defect-threshold", "0.5"]) == 2
    assert "not both" in capsys.readouterr().err
