"""``fabricdet eval-preds`` end to end on tiny on-disk datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fabricdet.cli import main
from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats import write_coco, write_tianchi
from fabricdet.data.formats.rle import encode_mask

W, H = 80, 40


def _dataset(root: Path, with_masks: bool) -> DetectionDataset:
    recs = []
    for k in range(4):
        folder = "defect_Images" if k < 3 else "normal_Images"
        path = root / folder / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (W, H)).save(path)
        insts = []
        if k < 3:
            m = np.zeros((H, W), np.uint8)
            m[5 + k : 9 + k, 10 : 60 - k] = 1  # a thin horizontal defect
            box = (10.0, 5.0 + k, 60.0 - k, 9.0 + k)
            insts.append(Instance(box, k + 1, mask=encode_mask(m) if with_masks else None))
        recs.append(ImageRecord(k + 1, f"{folder}/{k}.jpg", W, H, insts))
    return DetectionDataset(root, TIANCHI_CATEGORIES, recs)


def test_tianchi_folder_with_perfect_submission(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", with_masks=False)
    write_tianchi(ds, ds.root)
    sub = [
        {
            "name": r.file_name.split("/")[1],
            "category": i.category_id,
            "bbox": list(i.box),
            "score": 0.9,
        }
        for r in ds.images
        for i in r.instances
    ]
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    assert main(["eval-preds", str(ds.root), str(tmp_path / "sub.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    for key in (
        "tianchi_score",
        "acc",
        "map_voc",
        "coco_ap",
        "coco_ap50",
        "coco_ap75",
        "coco_aps",
        "coco_apm",
        "coco_apl",
        "coco_ap_agnostic",
        "coco_ap50_agnostic",
        "per_class",
    ):
        assert key in out
    assert out["tianchi_score"] == 1.0 and out["acc"] == 1.0
    assert out["coco_ap50"] == pytest.approx(1.0) and out["coco_ap"] == pytest.approx(1.0)
    assert "mask_ap" not in out
    assert set(out["per_class"]) == {"hole", "stain", "three-filament"}

    assert main(["eval-preds", str(ds.root), str(tmp_path / "sub.json")]) == 0
    table = capsys.readouterr().out
    assert "Tianchi score" in table and "hole" in table


def test_coco_with_masks_and_shifted_results(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", with_masks=True)
    write_coco(ds, ds.root / "coco.json")
    res = []
    for r in ds.images:
        for i in r.instances:
            x1, y1, x2, y2 = i.box
            m = np.zeros((H, W), np.uint8)
            m[int(y1) + 1 : int(y2) + 1, int(x1) : int(x2)] = 1  # one pixel lower
            rle = encode_mask(m)
            res.append(
                {
                    "image_id": r.image_id,
                    "category_id": i.category_id,
                    "bbox": [x1, y1 + 1, x2 - x1, y2 - y1],
                    "score": 0.8,
                    "segmentation": rle,
                }
            )
    (tmp_path / "res.json").write_text(json.dumps(res))
    rc = main(["eval-preds", str(ds.root / "coco.json"), str(tmp_path / "res.json"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("mask_ap", "mask_ap50", "mask_ap75", "mask_miou", "mask_boundary_iou"):
        assert key in out
    # a 4-row mask moved down by one row: IoU 3/5; box IoU is the same
    assert abs(out["mask_miou"] - 3 / 5) < 1e-9
    assert out["map_voc"] == 1.0 and out["mask_ap75"] == 0.0
    assert out["mask_ap50"] == pytest.approx(1.0)


def test_bad_prediction_file_is_a_clean_error(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", with_masks=False)
    write_tianchi(ds, ds.root)
    (tmp_path / "sub.json").write_text(
        json.dumps([{"name": "nope.jpg", "category": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    assert main(["eval-preds", str(ds.root), str(tmp_path / "sub.json"), "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "nope.jpg" in cap.err and "record [0]" in cap.err


def test_coco_ground_truth_without_images(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", with_masks=False)
    gt = tmp_path / "gt.json"
    write_coco(ds, gt)  # the JSON alone: its images are elsewhere
    res = [{"image_id": 1, "category_id": 1, "bbox": [10, 5, 50, 4], "score": 0.5}]
    (tmp_path / "res.json").write_text(json.dumps(res))
    assert main(["eval-preds", str(gt), str(tmp_path / "res.json"), "--json"]) == 2
    assert "cannot find the first image" in capsys.readouterr().err
    args = ["eval-preds", str(gt), str(tmp_path / "res.json"), "--json", "--no-image-check"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 4 and out["map_voc"] == pytest.approx(1 / 3)
