"""YOLO reader/writer: names files, empty label = background, split folders, polygons, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from formats_testdata import H, W, make_image

from fabricdet.data.formats import InvalidDataError, load_dataset, read_yolo, write_yolo


def _yolo(root: Path, labels: dict[str, str], images: tuple[str, ...] = ("a.jpg", "b.jpg")) -> Path:
    for name in images:
        make_image(root / "images" / name)
    for name, text in labels.items():
        p = root / "labels" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_reads_boxes_and_background(tmp_path):
    # cx=0.25*64=16, w=0.25*64=16 -> x 8..24; cy=0.5*32=16, h=0.5*32=16 -> y 8..24
    root = _yolo(
        tmp_path / "y",
        {"a.txt": "1 0.25 0.5 0.25 0.5\n\n", "b.txt": ""},
        images=("a.jpg", "b.jpg", "c.jpg"),
    )
    ds, report = read_yolo(root)
    assert report.clean
    assert [r.file_name for r in ds.images] == ["images/a.jpg", "images/b.jpg", "images/c.jpg"]
    assert ds.images[0].instances[0].box == (8.0, 8.0, 24.0, 24.0)
    assert ds.images[0].instances[0].category_id == 1
    assert ds.images[1].instances == [] and ds.images[2].instances == []  # empty / missing
    assert [c.name for c in ds.categories] == ["class_0", "class_1"]
    assert [c.id for c in ds.categories] == [0, 1]


@pytest.mark.parametrize(
    ("fname", "text"),
    [
        ("data.yaml", "names: [hole, knot]\n"),
        ("data.yaml", "names:\n  0: hole\n  1: knot\n"),
        ("classes.txt", "hole\nknot\n"),
        ("obj.names", "hole\nknot\n"),
    ],
)
def test_class_names(tmp_path, fname, text):
    root = _yolo(tmp_path / "y", {"a.txt": "1 0.5 0.5 0.5 0.5"})
    (root / fname).write_text(text)
    ds = load_dataset(root)
    assert [c.name for c in ds.categories] == ["hole", "knot"]


def test_split_folders_and_polygon(tmp_path):
    root = tmp_path / "y"
    make_image(root / "images/train/a.jpg")
    make_image(root / "images/val/b.jpg")
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/train/a.txt").write_text("0 0.125 0.25 0.375 0.25 0.375 0.75 0.125 0.75\n")
    ds = load_dataset(root)
    assert [r.split for r in ds.images] == ["train", "val"]
    inst = ds.images[0].instances[0]
    assert inst.box == (8.0, 8.0, 24.0, 24.0) and inst.mask is not None


YOLO_BAD = [
    ("0 0.5 0.5 0.5\n", "malformed-record", "4 fields"),
    ("0 0.5 x 0.5 0.5\n", "malformed-record", "non-numeric"),
    ("5 0.5 0.5 0.5 0.5\n", "unknown-category", "class 5"),
    ("0 0.5 0.5 0 0.5\n", "bad-box", "x2 <= x1"),
    ("0 1.5 0.5 0.5 0.5\n", "box-outside", "outside"),
    ("0 nan 0.5 0.5 0.5\n", "non-finite", "NaN"),
]


@pytest.mark.parametrize(("line", "kind", "text"), YOLO_BAD)
def test_yolo_validation(tmp_path, line, kind, text):
    root = _yolo(tmp_path / "y", {"a.txt": "0 0.5 0.5 0.5 0.5\n" + line})
    (root / "data.yaml").write_text("names: [hole, knot]\n")
    with pytest.raises(InvalidDataError) as info:
        read_yolo(root)
    msg = str(info.value)
    assert "a.txt, line 2" in msg and text in msg and "Fix:" in msg
    ds, report = read_yolo(root, strict=False)
    assert [p.kind for p in report.skipped] == [kind] and len(ds.images[0].instances) == 1


def test_orphan_label_file(tmp_path):
    root = _yolo(tmp_path / "y", {"zzz.txt": "0 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(InvalidDataError, match=r"zzz\.txt: label file has no image"):
        read_yolo(root)


def test_write_yolo(tmp_path):
    root = _yolo(tmp_path / "y", {"a.txt": "1 0.25 0.5 0.25 0.5\n"})
    (root / "data.yaml").write_text("names: [hole, knot]\n")
    ds = load_dataset(root)
    out = tmp_path / "out"
    write_yolo(ds, out)
    assert (out / "labels/a.txt").read_text() == "1 0.250000 0.500000 0.250000 0.500000\n"
    assert (out / "labels/b.txt").read_text() == ""  # background: empty file
    meta = yaml.safe_load((out / "data.yaml").read_text())
    assert meta["names"] == ["hole", "knot"] and meta["category_ids"] == [0, 1]
    assert (W, H) == (64, 32)
