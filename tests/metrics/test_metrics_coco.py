"""COCO AP in memory equals pycocotools run the standard file-based way."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from metrics_testdata import CATS, dataset, masked_instance, perfect, preds, rect_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats import write_coco
from fabricdet.data.formats.rle import encode_mask
from fabricdet.metrics import Predictions, coco_metrics, write_coco_results
from fabricdet.metrics.prediction_files import coco_results


def _file_based(gt_path: Path, results: list[dict], iou_type: str) -> np.ndarray:
    res_path = gt_path.parent / f"res_{iou_type}.json"
    res_path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(res_path))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _random_case(rng: np.random.Generator, with_masks: bool):
    h, w = 60, 120
    images, rows, masks = [], [], []
    for iid in range(1, 9):
        insts = []
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 20))
            bw, bh = int(rng.integers(2, 30)), int(rng.integers(1, 20))
            m = rect_mask(h, w, x1, y1, x1 + bw, y1 + bh)
            insts.append(masked_instance(int(rng.integers(1, 3)), m))
            for _ in range(int(rng.integers(0, 3))):
                dx, dy = rng.integers(-3, 4, 2)
                x, y = max(x1 + dx, 0), max(y1 + dy, 0)
                pm = rect_mask(h, w, x, y, x + bw, y + bh)
                ys, xs = np.nonzero(pm)
                box = (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
                rows.append((iid, insts[-1].category_id, box, float(rng.random())))
                masks.append(encode_mask(pm))
        images.append(ImageRecord(iid, f"{iid}.jpg", w, h, insts))
    ds = DetectionDataset(Path("."), CATS, images)
    p = preds(rows)
    if with_masks:
        p = Predictions(p.image_ids, p.category_ids, p.boxes, p.scores, tuple(masks))
    return ds, p


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_equals_file_based_pycocotools(tmp_path, iou_type):
    ds, p = _random_case(np.random.default_rng(1), with_masks=True)
    ours = coco_metrics(ds, p, iou_type=iou_type)
    gt_path = tmp_path / "gt.json"
    write_coco(ds, gt_path)
    write_coco_results(p, tmp_path / "written_results.json")  # our writer's file loads too
    assert len(json.loads((tmp_path / "written_results.json").read_text())) == len(p)
    results = coco_results(p, with_masks=iou_type == "segm")
    if iou_type == "segm":
        for r in results:
            del r["bbox"]
    ref = _file_based(gt_path, results, iou_type)
    got = [ours.ap, ours.ap50, ours.ap75, ours.aps, ours.apm, ours.apl]
    assert got == pytest.approx(ref[:6].tolist())
    assert 0.0 < ours.ap < 1.0  # a non-trivial case
    assert set(ours.per_class) == {1, 2}


def test_perfect_predictions_give_ap_one():
    ds = dataset({1: [(1, (0, 0, 10, 10)), (2, (20, 5, 60, 45))], 2: [(1, (3, 3, 40, 9))], 3: []})
    m = coco_metrics(ds, perfect(ds))
    assert (m.ap, m.ap50, m.ap75) == (1.0, 1.0, 1.0)
    assert m.per_class == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_class_agnostic_ap_counts_found_defects_whatever_their_class():
    ds = dataset({1: [(1, (0, 0, 10, 10)), (2, (20, 5, 60, 45))], 2: [(1, (3, 3, 40, 9))]})
    # every box exact, every class swapped (1 <-> 2), plus a miss-placed box
    rows = [(r.image_id, 3 - i.category_id, i.box, 0.9) for r in ds.images for i in r.instances]
    p = preds([*rows, (1, 1, (70.0, 0.0, 90.0, 20.0), 0.5)])
    assert coco_metrics(ds, p).ap == 0.0
    found = coco_metrics(ds, p, class_agnostic=True)
    assert (found.ap, found.ap50) == (pytest.approx(1.0), pytest.approx(1.0))
    assert found.per_class == {}


def test_empty_predictions_and_quiet_stdout(capsys):
    ds = dataset({1: [(1, (0, 0, 10, 10))]})
    m = coco_metrics(ds, preds([]))
    assert m.ap == 0.0 and m.per_class == {1: 0.0}
    assert capsys.readouterr().out == ""  # pycocotools' prints swallowed


def test_segm_needs_masks():
    ds = dataset({1: [(1, (0, 0, 10, 10))]})
    with pytest.raises(ValueError, match="mask"):
        coco_metrics(ds, perfect(ds), iou_type="segm")
