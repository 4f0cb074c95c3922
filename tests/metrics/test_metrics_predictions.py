"""Prediction files: round trips, format detection, validation naming the record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from metrics_testdata import dataset, preds

from fabricdet.data.formats import InvalidDataError
from fabricdet.metrics import (
    Predictions,
    read_predictions,
    write_coco_results,
    write_tianchi_submission,
)

A = (1.0, 2.0, 11.5, 12.0)


def test_round_trips(tmp_path):
    ds = dataset({1: [(1, A)], 2: []})
    p = preds([(1, 1, A, 0.9), (2, 2, (0, 0, 5, 5), 0.25)])
    write_tianchi_submission(p, ds, tmp_path / "sub.json")
    sub = json.loads((tmp_path / "sub.json").read_text())
    assert sub[0] == {"name": "1.jpg", "category": 1, "bbox": [1.0, 2.0, 11.5, 12.0], "score": 0.9}
    write_coco_results(p, tmp_path / "res.json")
    assert json.loads((tmp_path / "res.json").read_text())[0]["bbox"] == [1.0, 2.0, 10.5, 10.0]
    for name in ("sub.json", "res.json"):
        back = read_predictions(tmp_path / name, ds)
        assert np.array_equal(back.image_ids, p.image_ids)
        assert np.array_equal(back.category_ids, p.category_ids)
        assert np.allclose(back.boxes, p.boxes) and np.allclose(back.scores, p.scores)
        assert back.boxes.dtype == np.float32 and back.masks is None


def test_tianchi_category_by_name(tmp_path):
    ds = dataset({1: [(1, A)]})
    recs = [
        {"name": "defect_Images/1.jpg", "category": "水渍", "bbox": list(A), "score": 1},
        {"name": "1.jpg", "category": "hole", "bbox": list(A), "score": 1},
        {"name": "1.jpg", "category": "2", "bbox": list(A), "score": 1},
    ]
    (tmp_path / "s.json").write_text(json.dumps(recs, ensure_ascii=True))
    assert read_predictions(tmp_path / "s.json", ds).category_ids.tolist() == [2, 1, 2]


BAD = [
    ({"name": "1.jpg", "category": 1, "bbox": list(A), "score": float("nan")}, "bad-score"),
    ({"name": "zz.jpg", "category": 1, "bbox": list(A), "score": 0.5}, "unknown-image"),
    ({"name": "1.jpg", "category": 7, "bbox": list(A), "score": 0.5}, "unknown-category"),
    ({"name": "1.jpg", "category": 1, "bbox": [5, 5, 1, 9], "score": 0.5}, "bad-box"),
    ({"name": "1.jpg", "category": 1, "bbox": [5, 5, float("inf"), 9], "score": 0.5}, "non-finite"),
    ({"name": "1.jpg", "category": 1, "bbox": [5, 5, 9], "score": 0.5}, "malformed-record"),
    ({"name": "1.jpg", "category": 1, "score": 0.5}, "malformed-record"),
]


@pytest.mark.parametrize(("bad", "kind"), BAD)
def test_tianchi_validation(tmp_path, bad, kind):
    ds = dataset({1: [(1, A)]})
    good = {"name": "1.jpg", "category": 1, "bbox": list(A), "score": 0.5}
    (tmp_path / "s.json").write_text(json.dumps([good, bad]))
    with pytest.raises(InvalidDataError) as info:
        read_predictions(tmp_path / "s.json", ds)
    assert "s.json, record [1]" in str(info.value) and "Fix:" in str(info.value)
    assert [p.kind for p in info.value.problems] == [kind]


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        ({"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "unknown-image"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}, "bad-box"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "x"}, "bad-score"),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}, "unknown-category"),
    ],
)
def test_coco_validation(tmp_path, bad, kind):
    ds = dataset({1: [(1, A)]})
    (tmp_path / "r.json").write_text(json.dumps([bad]))
    with pytest.raises(InvalidDataError, match=r"r\.json, record \[0\]") as info:
        read_predictions(tmp_path / "r.json", ds)
    assert info.value.problems[0].kind == kind


def test_malformed_and_unknown_files(tmp_path):
    ds = dataset({1: []})
    (tmp_path / "a.json").write_text('[\n{"name": "1.jpg"\n')
    with pytest.raises(InvalidDataError, match="line 3"):
        read_predictions(tmp_path / "a.json", ds)
    (tmp_path / "b.json").write_text('[{"what": 1}]')
    with pytest.raises(InvalidDataError, match="cannot tell the prediction format"):
        read_predictions(tmp_path / "b.json", ds)
    (tmp_path / "c.json").write_text("[]")
    assert len(read_predictions(tmp_path / "c.json", ds)) == 0


def test_from_model_outputs():
    ds = dataset({1: [], 2: []})
    outs = [
        {
            "boxes": np.array([[0, 0, 4, 4]]),
            "scores": np.array([0.5]),
            "labels": np.array([1]),
            "masks": np.ones((1, 1, 50, 100)) * 0.7,
        },
        {
            "boxes": np.zeros((0, 4)),
            "scores": np.zeros(0),
            "labels": np.zeros(0, int),
            "masks": np.zeros((0, 1, 50, 100)),
        },
    ]
    p = Predictions.from_model_outputs(ds, [1, 2], outs)
    assert p.category_ids.tolist() == [2]  # label 1 -> the second category, id 2
    assert p.has_masks and p.masks[0]["size"] == [50, 100]
    assert len(Predictions.empty()) == 0
