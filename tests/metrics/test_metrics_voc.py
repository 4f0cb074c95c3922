"""VOC AP and the Tianchi score on hand-made cases with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_testdata import dataset, perfect, preds

from fabricdet.data.dataset import Instance
from fabricdet.data.formats.crowd import CrowdImageRecord
from fabricdet.errors import DataError
from fabricdet.metrics import (
    best_defect_threshold,
    box_iou,
    image_accuracy,
    tianchi_score,
    voc_ap,
)
from fabricdet.metrics.voc import GroundTruth, voc_map

A, B, C = (0, 0, 10, 10), (20, 0, 30, 10), (0, 0, 10, 10)


def _case():
    # image 1: A, B (class 1); image 2: C (class 1); image 3: normal.
    ds = dataset({1: [(1, A), (1, B)], 2: [(1, C)], 3: []})
    p = preds(
        [
            (1, 2, (50, 20, 60, 30), 0.95),  # class 2 is not in the ground truth: no AP of its own
            (1, 1, A, 0.9),  # TP (IoU 1 with A)
            (1, 1, A, 0.8),  # FP: its best box A is taken
            (2, 1, (5, 0, 15, 10), 0.7),  # IoU with C = 50 / 150 = 1/3: TP at 0.1, 0.3; FP at 0.5
            (1, 1, B, 0.6),  # TP
            (3, 1, (0, 0, 5, 5), 0.5),  # FP (normal image)
        ]
    )
    return ds, p


def test_voc_ap_envelope():
    # recall [1/3, 1/3, 2/3, 1, 1], precision [1, 1/2, 2/3, 3/4, 3/5]
    # envelope: 1 up to recall 1/3, then 3/4 up to 1 -> AP = 1/3 + 2/3 * 3/4 = 5/6
    r = np.array([1, 1, 2, 3, 3]) / 3
    p = np.array([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    assert voc_ap(r, p) == pytest.approx(5 / 6)
    assert voc_ap(np.array([]), np.array([])) == 0.0


def test_hand_computed_map_and_score():
    ds, p = _case()
    gt = GroundTruth.of(ds)
    # IoU 0.1 and 0.3: order TP FP TP TP FP -> AP = 5/6 (see test_voc_ap_envelope).
    assert voc_map(gt, p, 0.1).per_class == {1: pytest.approx(5 / 6)}
    assert voc_map(gt, p, 0.3).map == pytest.approx(5 / 6)
    # IoU 0.5: TP FP FP TP FP -> recall [1,1,1,2,2]/3, precision [1, 1/2, 1/3, 1/2, 2/5]
    # envelope 1 to recall 1/3, 1/2 to 2/3 -> AP = 1/3 + 1/3 * 1/2 = 1/2
    assert voc_map(gt, p, 0.5).map == pytest.approx(0.5)
    s = tianchi_score(ds, p)
    m = (5 / 6 + 5 / 6 + 1 / 2) / 3  # = 13/18
    assert s.map == pytest.approx(m)
    # every image appears in the submission; image 3 is normal -> ACC 2/3
    assert s.acc == pytest.approx(2 / 3)
    assert s.score == pytest.approx(0.2 * 2 / 3 + 0.8 * m)
    assert s.map_per_iou == {0.1: pytest.approx(5 / 6), 0.3: pytest.approx(5 / 6), 0.5: 0.5}
    # with a score threshold of 0.55 image 3 (best score 0.5) counts as normal -> ACC 1
    assert tianchi_score(ds, p, score_threshold=0.55).score == pytest.approx(0.2 + 0.8 * m)


def test_perfect_predictions_score_one():
    ds = dataset({1: [(1, A), (2, B)], 2: [(1, C)], 3: []})
    s = tianchi_score(ds, perfect(ds))
    assert (s.score, s.acc, s.map) == (1.0, 1.0, 1.0)


def test_no_predictions():
    ds = dataset({1: [(1, A)], 2: []})
    s = tianchi_score(ds, preds([]))
    assert s.map == 0.0 and s.acc == 0.5 and s.score == pytest.approx(0.1)


def test_iou_threshold_is_strict():
    # IoU exactly 0.5: (0,0,10,10) vs (0,0,10,20) -> 100 / 200. VOC needs IoU > 0.5.
    ds = dataset({1: [(1, (0, 0, 10, 20))]})
    p = preds([(1, 1, (0, 0, 10, 10), 0.9)])
    gt = GroundTruth.of(ds)
    assert voc_map(gt, p, 0.5).map == 0.0 and voc_map(gt, p, 0.3).map == 1.0


def test_crowd_regions_are_ignored_like_difficult_boxes():
    ds = dataset({1: [(1, A)]})
    rec = ds.images[0]
    ds.images[0] = CrowdImageRecord(
        rec.image_id,
        rec.file_name,
        rec.width,
        rec.height,
        rec.instances,
        crowd=[Instance((50, 0, 90, 40), 1)],
    )
    p = preds([(1, 1, (50, 0, 90, 40), 0.99), (1, 1, A, 0.5)])  # first hits the crowd region
    assert voc_map(GroundTruth.of(ds), p, 0.5).map == 1.0  # neither TP nor FP


def test_box_iou():
    iou = box_iou(np.array([A, (5, 0, 15, 10)]), np.array([C, (100, 100, 100, 100)]))
    assert iou == pytest.approx(np.array([[1.0, 0.0], [1 / 3, 0.0]]))
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_image_accuracy_and_unknown_ids():
    ds = dataset({1: [(1, A)], 2: []})
    assert image_accuracy(ds, preds([(2, 1, A, 0.1)])) == 0.0
    with pytest.raises(DataError, match="image id"):
        tianchi_score(ds, preds([(7, 1, A, 0.1)]))
    with pytest.raises(DataError, match="category id"):
        tianchi_score(ds, preds([(1, 9, A, 0.1)]))


def test_best_defect_threshold_separates_defective_from_normal_images():
    # defective images 1, 2 score 0.9 and 0.6; normal 3, 4 score 0.7 and 0.2; 5 has nothing
    ds = dataset({1: [(1, A)], 2: [(1, A)], 3: [], 4: [], 5: []})
    p = preds([(1, 1, A, 0.9), (1, 1, B, 0.1), (2, 1, A, 0.6), (3, 1, A, 0.7), (4, 1, A, 0.2)])
    t = best_defect_threshold(ds, p)
    # 0.9 and 0.6 both give 4/5 correct (0.6 calls 3 defective, 0.9 misses 2); ties go high
    assert t == pytest.approx(0.9)
    assert image_accuracy(ds, p, t) == pytest.approx(0.8)
    # brute force over a fine grid never beats it
    grid = max(image_accuracy(ds, p, g) for g in np.linspace(0, 1.2, 241))
    assert image_accuracy(ds, p, t) == pytest.approx(grid)
    # every image normal: the threshold sits above every score
    normal = dataset({3: [], 4: []})
    assert best_defect_threshold(normal, preds([(3, 1, A, 0.7)])) > 0.7
    with pytest.raises(DataError, match="image id"):
        best_defect_threshold(ds, preds([(9, 1, A, 0.5)]))


def test_vectorised_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    objs = {}
    for iid in range(1, 30):
        xy = rng.uniform(0, 80, (int(rng.integers(0, 4)), 2))
        objs[iid] = [(int(rng.integers(1, 3)), (x, y, x + 15, y + 10)) for x, y in xy]
    ds = dataset(objs)
    rows = []
    for iid, lst in objs.items():
        for c, (x1, y1, x2, y2) in lst:
            for _ in range(int(rng.integers(0, 3))):
                d = rng.normal(0, 4, 4)
                rows.append((iid, c, (x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]), rng.random()))
        rows.append((iid, int(rng.integers(1, 3)), (0, 0, 20, 20), rng.random()))
    p = preds(rows)
    gt = GroundTruth.of(ds)
    for t in (0.1, 0.3, 0.5):
        assert voc_map(gt, p, t).per_class == pytest.approx(_loop_voc(ds, rows, t))


def _loop_voc(ds, rows, t):
    """The devkit's voc_eval loop, written plainly (continuous IoU)."""
    out = {}
    for c in (1, 2):
        gts = {r.image_id: [i.box for i in r.instances if i.category_id == c] for r in ds.images}
        npos = sum(len(v) for v in gts.values())
        if npos == 0:
            continue
        used = {k: [False] * len(v) for k, v in gts.items()}
        dets = sorted([r for r in rows if r[1] == c], key=lambda r: -np.float32(r[3]))
        tp, fp = [], []
        for iid, _, box, _ in dets:
            g = gts[iid]
            ious = box_iou(np.array([box]), np.array(g).reshape(-1, 4))[0] if g else []
            j = int(np.argmax(ious)) if len(ious) else -1
            ok = j >= 0 and ious[j] > t and not used[iid][j]
            if ok:
                used[iid][j] = True
            tp.append(ok)
            fp.append(not ok)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        out[c] = voc_ap(ctp / npos, ctp / np.maximum(ctp + cfp, 1e-12))
    return out
