"""The mask head and its place in the detector: shapes, pasting, training steps, outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.rle import encode_mask
from fabricdet.engine import apply_overrides, load_model, preset, train
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.predict import detect
from fabricdet.masks.roi import boxes_from_masks, expand_boxes, paste_masks
from fabricdet.models.config import MaskConfig, ModelConfig
from fabricdet.models.detector import FabricDetector

# No set loss: SinkhornNMS over 300 candidates would dominate these mask tests.
SMALL = {"width": 8, "fpn_channels": 16, "embed_dim": 4, "mask_head": True, "set_loss": False}


def _model(**mask: object) -> FabricDetector:
    torch.manual_seed(0)
    return FabricDetector(ModelConfig(**SMALL, masks=MaskConfig(**mask)), 2)  # type: ignore[arg-type]


def _targets(with_masks: bool) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.rand(3, 64, 96), torch.rand(3, 48, 64)]
    boxes = [torch.tensor([[10.0, 20, 60, 24], [5, 5, 8, 40]]), torch.tensor([[20.0, 10, 40, 30]])]
    targets = []
    for img, b in zip(images, boxes, strict=True):
        t = {"boxes": b, "labels": torch.zeros(len(b), dtype=torch.long)}
        if with_masks:
            m = torch.zeros(len(b), *img.shape[-2:], dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
                m[k, y1:y2, x1:x2] = 1
            t["masks"] = m
        targets.append(t)
    return images, targets


def test_head_output_shapes_including_no_instances():
    model = _model(roi_size=16)
    images, _ = _targets(False)
    batch = model._batch(images)
    feats = model.features(batch)
    head = model.mask_head
    out = head(feats, batch, torch.tensor([[1.0, 2, 30, 9], [4, 4, 20, 40]]), torch.tensor([0, 1]))
    assert out.logits.shape == (2, 16, 16) and out.box_masks.shape == (2, 16, 16)
    assert out.residual.shape == (2, 3, 16, 16) and out.rois.shape == (2, 4)
    probs, unc = head.probabilities(out)
    assert probs.shape == unc.shape == (2, 16, 16)
    assert ((unc >= 0) & (unc <= 1)).all()
    empty = head(feats, batch, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.logits.shape == (0, 16, 16)


@pytest.mark.parametrize("with_masks", [False, True])
def test_train_step_gives_finite_mask_losses_that_reach_the_head(with_masks):
    model = _model()
    model.train()
    model.progress = 0.5  # past the warm-up and the self-training start
    images, targets = _targets(with_masks)
    losses = model(images, targets)
    names = {"mask_full"} if with_masks else {"mask_proj", "mask_pair", "mask_self"}
    assert names <= set(losses) and not ({"mask_full", "mask_proj"} - names) & set(losses)
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in names)
    sum(losses.values()).backward()
    grad = model.mask_head.controller[-1].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_eval_outputs_masks_in_torchvision_convention():
    model = _model(boxes_from_masks=True).eval()
    # Few candidates and detections: SinkhornNMS over 1000 candidates would dominate the test.
    model.cfg.score_thresh, model.cfg.topk_candidates, model.cfg.detections_per_img = 0.0, 40, 5
    images, _ = _targets(False)
    out = model(images)
    for o, img in zip(out, images, strict=True):
        k = len(o["boxes"])
        assert k > 0
        assert o["masks"].shape == (k, 1, *img.shape[-2:]) and o["masks"].dtype == torch.float32
        assert o["mask_uncertainty"].shape == o["masks"].shape
        assert ((o["masks"] >= 0) & (o["masks"] <= 1)).all()


def test_paste_and_boxes_from_masks_round_trip():
    box = torch.tensor([[10.0, 5.0, 30.0, 9.0]])
    rois = expand_boxes(box, 0.25, 2.0)
    grid = torch.zeros(1, 16, 16)
    # Cells whose centres fall inside the box: the pasted mask covers the box.
    xs = rois[0, 0] + (torch.arange(16) + 0.5) / 16 * (rois[0, 2] - rois[0, 0])
    ys = rois[0, 1] + (torch.arange(16) + 0.5) / 16 * (rois[0, 3] - rois[0, 1])
    grid[0] = ((ys[:, None] > 5) & (ys[:, None] < 9) & (xs[None] > 10) & (xs[None] < 30)).float()
    pasted = paste_masks(grid, rois, 20, 40)
    assert pasted.shape == (1, 20, 40)
    assert pasted[0, :, :3].sum() == 0 and pasted[0, 15:].sum() == 0  # nothing outside the roi
    derived = boxes_from_masks(pasted, torch.zeros(1, 4))
    assert torch.allclose(derived, box, atol=1.0)
    assert torch.equal(boxes_from_masks(torch.zeros(1, 20, 40), box), box)  # empty: fallback


def _dataset(root) -> DetectionDataset:
    root.mkdir(parents=True, exist_ok=True)
    recs = []
    for iid in range(4):
        img = np.full((64, 128, 3), 90, np.uint8)
        m = np.zeros((64, 128), np.uint8)
        x = 20 + 20 * iid
        m[10:50, x : x + 3] = 1  # a thin bright thread
        img[m > 0] = 230
        cv2.imwrite(str(root / f"{iid}.png"), img)
        inst = Instance((float(x), 10.0, float(x + 3), 50.0), 1, encode_mask(m))
        recs.append(ImageRecord(iid, f"{iid}.png", 128, 64, [inst], "train"))
    return DetectionDataset(root, (Category(1, "thread"),), recs)


def test_engine_trains_with_masks_and_reports_mask_metrics_and_sizes(tmp_path):
    data = _dataset(tmp_path / "data")
    cfg = apply_overrides(
        preset("tiny"),
        ["train.max_steps=2", "model.mask_head=true", "data.max_size=128", "data.num_workers=0",
         "train.batch_size=2", "eval.score_threshold=0.0", "model.score_thresh=0.0",
         "model.topk_candidates=30", "model.detections_per_img=3", "model.set_topk=30",
         "model.slots=10", "model.width=8", "model.fpn_channels=16"],
    )  # fmt: skip
    run = train(cfg, data, tmp_path / "run", progress=False)
    loaded = load_model(run)
    summary = evaluate(loaded, data, split="train", progress=False)
    for key in ("mask_ap", "mask_ap50", "mask_miou"):
        assert 0.0 <= summary[key] <= 1.0
    dets = detect(loaded, [tmp_path / "data" / "0.png"], score_threshold=0.0, progress=False)
    rec = json.loads(json.dumps(dets[0].to_json()))
    k = len(rec["boxes"])
    assert len(rec["masks"]) == len(rec["areas_px"]) == len(rec["lengths_px"]) == k > 0
    assert all(a >= 0 for a in rec["areas_px"])
