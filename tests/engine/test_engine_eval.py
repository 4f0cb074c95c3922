"""Evaluation: detections mapped back to original pixels and category ids score a perfect
detector 1.0; every NMS method; ``fabricdet eval`` output and files; errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from engine_double import OracleDetector
from engine_testdata import CATS, painted_dataset, tiny

from fabricdet.cli import main
from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats import write_coco
from fabricdet.engine import evaluate, evaluate_all_nms, load_model
from fabricdet.engine.checkpoint import save_model_file
from fabricdet.engine.evaluate import defective_images_only
from fabricdet.metrics import Predictions, read_predictions, tianchi_score
from fabricdet.ops.nms import NMS_METHODS

KEYS = {"coco_ap", "coco_ap50", "coco_ap75", "tianchi_score", "acc", "map_voc", "ms_per_image"}


@pytest.fixture
def oracle(tmp_path):
    """A perfect model saved as model.pt, and its 300x120 dataset (resized to 256x96)."""
    ds = painted_dataset(tmp_path / "data")
    cfg = tiny("data.max_size=256", "eval.score_threshold=0.5")
    path = tmp_path / "run" / "model.pt"
    save_model_file(path, OracleDetector(cfg.model, 2), cfg, CATS, "engine_double:build_oracle", 0)
    return path, ds


def test_perfect_detector_scores_one(oracle):
    path, ds = oracle
    result = evaluate(load_model(path), ds, split="train", progress=False)
    assert result.keys() >= KEYS
    assert result["coco_ap50"] == 1.0 and result["coco_ap"] > 0.8
    assert result["tianchi_score"] == 1.0 and result["acc"] == 1.0
    assert result["mask_ap50"] == 1.0  # masks mapped back to the original size too
    assert result["ms_per_image"] > 0 and result["nms"] == "sinkhorn"


def test_categories_are_matched_by_name_when_ids_differ(oracle):
    path, ds = oracle
    renumbered = {1: 7, 2: 9}
    cats = tuple(Category(renumbered[c.id], c.name) for c in CATS)
    images = [
        replace(
            r, instances=[replace(i, category_id=renumbered[i.category_id]) for i in r.instances]
        )
        for r in ds.images
    ]
    result = evaluate(
        load_model(path), DetectionDataset(ds.root, cats, images), split="train", progress=False
    )
    assert result["tianchi_score"] == 1.0


def test_every_nms_method_on_a_trained_model(double_run, synth, tmp_path):
    loaded = load_model(double_run)
    results = evaluate_all_nms(loaded, synth, split="all", out_dir=tmp_path, progress=False)
    assert list(results) == list(NMS_METHODS)
    for method, r in results.items():
        assert r.keys() >= KEYS and r["nms"] == method
        # The reported Tianchi numbers are those of the submission written.
        submission = read_predictions(tmp_path / f"submission_all_{method}.json", synth)
        official = tianchi_score(synth, submission)
        assert (r["tianchi_score"], r["acc"]) == (official.score, official.acc)
        assert r["num_predictions"] >= len(submission)
    assert loaded.model.nms_method == "sinkhorn"  # the model's own method is restored


def test_eval_command_prints_one_json_object(oracle, tmp_path, capsys):
    path, ds = oracle
    write_coco(ds, ds.root / "annotations.json")
    out = tmp_path / "eval"
    code = main(["eval", str(path.parent), str(ds.root), "--json", "--split", "train",
                 "--nms", "greedy", "--out", str(out)])  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    assert stdout.count("\n") == 1
    result = json.loads(stdout)
    assert result.keys() >= KEYS and result["tianchi_score"] == 1.0 and result["nms"] == "greedy"
    submission = json.loads((out / "submission_train_greedy.json").read_text())
    assert {r["name"] for r in submission} == {"1.png", "2.png"}
    coco = json.loads((out / "coco_results_train_greedy.json").read_text())
    assert len(coco) == 3 and all("segmentation" in r for r in coco)
    assert json.loads((out / "metrics_train_greedy.json").read_text())["coco_ap50"] == 1.0


def test_eval_command_defaults_and_all_methods(double_run, synth, capsys):
    assert main(["eval", str(double_run / "model.pt"), str(synth.root), "--quiet"]) == 0
    assert "Tianchi score" in capsys.readouterr().out
    assert (double_run / "submission_val_sinkhorn.json").is_file()  # beside the model
    assert main(["eval", str(double_run), str(synth.root), "--json", "--nms", "all"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(NMS_METHODS)


def test_eval_errors_name_the_file_and_the_fix(oracle, tmp_path, capsys):
    path, ds = oracle
    write_coco(ds, ds.root / "annotations.json")
    data = str(ds.root)

    def error(*args: str) -> str:
        assert main(["eval", *args]) == 2
        return capsys.readouterr().err

    assert "no such model file" in error(str(tmp_path / "none.pt"), data)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    assert f"{junk}: cannot read it as a model file" in error(str(junk), data)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not a fabricdet model file" in error(str(tmp_path / "other.pt"), data)
    err = error(str(path), data, "--nms", "fastest")
    assert "unknown NMS method 'fastest'; choose one of greedy, soft, matrix, diou, wbf" in err
    assert "split 'val' has no images" in error(str(path), data)


def test_submission_keeps_the_images_whose_best_detection_is_confident():
    preds = Predictions([1, 1, 2, 3], [1, 2, 1, 1], [[0, 0, 1, 1]] * 4, [0.9, 0.01, 0.04, 0.5])
    kept = defective_images_only(preds, 0.3)
    assert kept.image_ids.tolist() == [1, 1, 3]  # image 1 keeps its low-scored box too
    assert len(defective_images_only(Predictions.empty(), 0.3)) == 0
