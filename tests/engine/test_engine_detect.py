"""Inference on image files: ``detections.json`` in original pixels with category names,
annotated pictures, ``fabricdet detect`` and its errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from engine_double import OracleDetector
from engine_testdata import CATS, PAINTED, painted_dataset, tiny

from fabricdet.cli import main
from fabricdet.engine import detect, load_model, write_detections
from fabricdet.engine.checkpoint import save_model_file


@pytest.fixture
def oracle_model(tmp_path):
    cfg = tiny("data.max_size=256", "eval.score_threshold=0.5")
    path = tmp_path / "model.pt"
    save_model_file(path, OracleDetector(cfg.model, 2), cfg, CATS, "engine_double:build_oracle", 0)
    return path


def test_detections_in_original_pixels_with_names(oracle_model, tmp_path):
    ds = painted_dataset(tmp_path / "imgs")
    dets = detect(load_model(oracle_model), [ds.root / "1.png", ds.root / "3.png"], progress=False)
    d1, d3 = dets
    assert (d1.width, d1.height) == (300, 120) and len(d3.scores) == 0
    expected = sorted((c, b) for c, b in PAINTED[1])
    got = sorted(zip(d1.category_ids.tolist(), d1.boxes.tolist(), strict=True))
    for (c, box), (gc, gbox) in zip(expected, got, strict=True):
        assert c == gc
        np.testing.assert_allclose(gbox, box, atol=3.5)  # one resized pixel is 1.2 px here
    assert sorted(d1.category_names) == ["hole", "knot"]
    assert d1.masks is not None and len(d1.masks) == 2

    path = write_detections(dets, tmp_path / "out")
    records = json.loads(path.read_text())
    assert [r["file"] for r in records] == [str(ds.root / "1.png"), str(ds.root / "3.png")]
    assert records[0]["category_names"] and "masks" in records[0]
    picture = cv2.imread(str(tmp_path / "out" / records[0]["annotated"]))
    assert picture.shape == (120, 300, 3)
    original = cv2.imread(str(ds.root / "1.png"))
    assert np.abs(picture.astype(int) - original).sum() > 0  # something was drawn


def test_detect_command(oracle_model, tmp_path, capsys):
    ds = painted_dataset(tmp_path / "imgs")
    out = tmp_path / "out"
    assert main(["detect", str(oracle_model), str(ds.root), "--out", str(out), "--quiet"]) == 0
    assert "3 detections in 3 images" in capsys.readouterr().out
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 3 and all((out / r["annotated"]).is_file() for r in records)


def test_detect_errors_name_the_file(oracle_model, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    assert main(["detect", str(oracle_model), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}: cannot decode the image" in capsys.readouterr().err
    missing = tmp_path / "missing.jpg"
    assert main(["detect", str(oracle_model), str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: no such image file" in capsys.readouterr().err
    assert not (tmp_path / "o" / "detections.json").exists()  # nothing half-written
