"""Training and evaluation run unchanged on the general set (a COCO dataset, not fabric)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fabricdet.data.formats import load_dataset
from fabricdet.data.general import GENERAL_CATEGORIES, generate_general
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.train import train


def test_train_two_steps_and_evaluate_greedy_and_sinkhorn(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    generate_general(tmp_path / "data", 8, seed=1, size=(96, 96))
    dataset = load_dataset(tmp_path / "data")
    cfg = apply_overrides(preset("tiny"), ["train.max_steps=2", "data.max_size=96"])
    model_path = train(cfg, dataset, tmp_path / "run", progress=False)
    loaded = load_model(model_path)
    assert loaded.categories == GENERAL_CATEGORIES
    for method in ("greedy", "sinkhorn"):
        res = evaluate(loaded, dataset, split="all", nms=method, progress=False)
        assert res["nms"] == method
        assert res["num_images"] == 8
        assert res["num_gt"] == sum(len(r.instances) for r in dataset.images)
        assert math.isfinite(res["coco_ap"]) and 0.0 <= res["coco_ap"] <= 1.0
        assert set(res["per_class"]) <= {c.name for c in GENERAL_CATEGORIES}
