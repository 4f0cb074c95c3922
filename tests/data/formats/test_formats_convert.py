"""Round trips between the formats, the convert command, detection, and failed writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from formats_testdata import make_image

from fabricdet.cli import main
from fabricdet.data.categories import TIANCHI_RAW_TO_ID
from fabricdet.data.formats import (
    InvalidDataError,
    detect_format,
    export_dataset,
    load_dataset,
)
from fabricdet.data.formats import export as export_module


def _tianchi(root: Path) -> Path:
    rng = np.random.default_rng(0)
    names = list(TIANCHI_RAW_TO_ID)
    records = []
    for k in range(6):
        make_image(root / "defect_Images" / f"d{k}.jpg", 2446 // 10, 100)
        for j in range(3):
            x1, y1 = rng.uniform(0, 200), rng.uniform(0, 60)
            w, h = rng.uniform(0.7, 40), rng.uniform(0.7, 39)
            records.append(
                {
                    "name": f"d{k}.jpg",
                    "defect_name": names[(3 * k + j) % 34],
                    "bbox": [round(x1, 2), round(y1, 2), round(x1 + w, 2), round(y1 + h, 2)],
                }
            )
    make_image(root / "normal_Images/n0.jpg", 244, 100)
    ann = root / "Annotations/anno_train.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps(records))
    return root


def _summary(ds):
    return [
        (os.path.basename(r.file_name), [(i.category_id, i.raw_name, i.box) for i in r.instances])
        for r in sorted(ds.images, key=lambda r: os.path.basename(r.file_name))
    ]


def test_round_trip_tianchi_coco_yolo_tianchi(tmp_path):
    src = _tianchi(tmp_path / "src")
    before = sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    assert main(["convert", str(src), str(tmp_path / "coco"), "--to", "coco"]) == 0
    assert detect_format(tmp_path / "coco")[0] == "coco"
    assert main(["convert", str(tmp_path / "coco"), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert detect_format(tmp_path / "yolo")[0] == "yolo"
    assert main(["convert", str(tmp_path / "yolo"), str(tmp_path / "back"), "--to", "tianchi"]) == 0
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == before  # untouched

    a, coco, back = (load_dataset(p) for p in (src, tmp_path / "coco", tmp_path / "back"))
    for (na, ia), (nc, ic) in zip(_summary(a), _summary(coco), strict=True):
        # through COCO: everything kept; boxes up to float rounding of xywh <-> xyxy
        assert na == nc and [i[:2] for i in ia] == [i[:2] for i in ic]
        assert np.allclose([i[2] for i in ia], [i[2] for i in ic], rtol=0, atol=1e-9)
    assert [c.id for c in back.categories] == [c.id for c in a.categories]
    for (na, ia), (nb, ib) in zip(_summary(a), _summary(back), strict=True):
        assert na == nb and len(ia) == len(ib)
        for (ca, _, ba), (cb, rb, bb) in zip(ia, ib, strict=True):
            # YOLO keeps categories (data.yaml category_ids) but not per-box raw names
            assert ca == cb and TIANCHI_RAW_TO_ID[rb] == cb
            assert np.allclose(ba, bb, atol=0.01)  # YOLO's 6-decimal normalised coordinates
    assert (tmp_path / "back/normal_Images/n0.jpg").is_file()
    assert sorted(p.name for p in (tmp_path / "back/defect_Images").iterdir()) == [
        f"d{k}.jpg" for k in range(6)
    ]


def test_convert_lenient_prints_report(tmp_path, capsys):
    src = _tianchi(tmp_path / "src")
    ann = src / "Annotations/anno_train.json"
    recs = json.loads(ann.read_text())
    recs.append({"name": "gone.jpg", "defect_name": "破洞", "bbox": [1, 1, 2, 2]})
    ann.write_text(json.dumps(recs))
    assert main(["convert", str(src), str(tmp_path / "o1"), "--to", "coco"]) == 2
    err = capsys.readouterr().err
    assert "gone.jpg" in err and "--lenient" in err and not (tmp_path / "o1").exists()
    assert main(["convert", str(src), str(tmp_path / "o2"), "--to", "coco", "--lenient"]) == 0
    assert "skipped 1 bad record" in capsys.readouterr().err


def test_nothing_half_written_after_failed_convert(tmp_path, monkeypatch):
    src = _tianchi(tmp_path / "src")
    ds = load_dataset(src)

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "write_tianchi", boom)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(ds, tmp_path / "dst", "tianchi")
    assert sorted(os.listdir(tmp_path)) == ["src"]  # no dst, no temporary folder left


def test_refuses_existing_destination(tmp_path):
    src = _tianchi(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst/keep.txt").write_text("x")
    with pytest.raises(InvalidDataError, match="destination exists"):
        export_dataset(load_dataset(src), tmp_path / "dst", "coco")
    assert os.listdir(tmp_path / "dst") == ["keep.txt"]


def test_flat_name_collisions(tmp_path):
    make_image(tmp_path / "x/a.jpg")
    make_image(tmp_path / "y/a.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "x/a.jpg"}, {"id": 2, "file_name": "y/a.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 3, 3]}],
        "categories": [{"id": 2, "name": "stain", "raw_names": ["水渍"]}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    out = export_dataset(load_dataset(tmp_path / "c.json"), tmp_path / "t", "tianchi")
    assert [r.file_name for r in out.images] == ["defect_Images/x__a.jpg", "normal_Images/y__a.jpg"]
    assert load_dataset(tmp_path / "t").images[0].instances[0].category_id == 2


def test_detect_format_errors(tmp_path):
    with pytest.raises(InvalidDataError, match="no such file"):
        detect_format(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidDataError, match=r"cannot tell.*Tianchi.*COCO.*YOLO"):
        load_dataset(tmp_path / "empty")
