"""Tianchi reader/writer: names escaped or not, all 34 raw names, splits, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from formats_testdata import H, W, make_image, write_tianchi_folder

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats import (
    InvalidDataError,
    assign_splits,
    load_dataset,
    read_tianchi,
    write_tianchi,
)
from fabricdet.data.formats.tianchi import normalise_raw_name
from fabricdet.errors import DataError


def test_reads_escaped_file(tianchi_folder, basic_records):
    root = tianchi_folder(basic_records)
    raw = (root / "Annotations/anno_train.json").read_text()
    assert "\\u" in raw and "破洞" not in raw  # really escaped, like the official file
    ds, report = read_tianchi(root)
    assert report.clean
    assert [r.file_name for r in ds.images] == [
        "defect_Images/a.jpg",
        "defect_Images/b.jpg",
        "normal_Images/n.jpg",
    ]
    assert [r.image_id for r in ds.images] == [1, 2, 3]
    assert (ds.images[0].width, ds.images[0].height) == (W, H)
    a = ds.images[0].instances
    assert [(i.category_id, i.raw_name) for i in a] == [(1, "破洞"), (2, "油渍")]
    assert a[1].box == (20.5, 3.25, 40.0, 30.0)
    assert ds.images[1].instances[0].category_id == 20
    assert ds.images[2].instances == []  # normal image: background
    assert ds.categories == TIANCHI_CATEGORIES
    assert all(r.split is None for r in ds.images)


def test_reads_unescaped_and_literally_escaped_names(tianchi_folder):
    records = [
        {"name": "a.jpg", "defect_name": "  破洞 ", "bbox": [1, 1, 5, 5]},
        # the name arrives as literal backslash-u text (a doubly escaped file)
        {"name": " a.jpg", "defect_name": "\\u6cb9\\u6e0d", "bbox": [6, 6, 9, 9]},
    ]
    root = tianchi_folder(records, ensure_ascii=False)
    assert "破洞" in (root / "Annotations/anno_train.json").read_text(encoding="utf-8")
    ds, _ = read_tianchi(root)
    assert [(i.category_id, i.raw_name) for i in ds.images[0].instances] == [
        (1, "破洞"),
        (2, "油渍"),
    ]


def test_all_34_raw_names(tianchi_folder):
    names = list(TIANCHI_RAW_TO_ID)
    assert len(names) == 34
    records = [
        {"name": "a.jpg", "defect_name": n, "bbox": [k, 0, k + 1.5, 10]}
        for k, n in enumerate(names)
    ]
    ds, _ = read_tianchi(tianchi_folder(records))
    got = [(i.raw_name, i.category_id) for i in ds.images[0].instances]
    assert got == [(n, TIANCHI_RAW_TO_ID[n]) for n in names]
    assert len({cid for _, cid in got}) == 20


def test_normalise_raw_name():
    assert normalise_raw_name(" \\u7834\\u6d1e\n") == "破洞"
    assert normalise_raw_name("破洞") == "破洞"


def test_splits_file(tianchi_folder, basic_records):
    root = tianchi_folder(basic_records)
    splits = {"train": ["defect_Images/a.jpg"], "val": ["n.jpg"], "test": []}
    (root / "Annotations/splits.json").write_text(json.dumps(splits))
    ds = load_dataset(root)
    assert [r.split for r in ds.images] == ["train", None, "val"]
    assert [r.file_name for r in ds.subset("train").images] == ["defect_Images/a.jpg"]


def test_assign_splits_is_deterministic_and_pure():
    images = [ImageRecord(i + 1, f"defect_Images/{i:05d}.jpg", 10, 10) for i in range(2000)]
    ds = DetectionDataset(Path("."), TIANCHI_CATEGORIES, images)
    a = assign_splits(ds, val=0.1, test=0.2, seed=0)
    b = assign_splits(ds, val=0.1, test=0.2, seed=0)
    assert all(r.split is None for r in ds.images)  # input untouched
    assert [r.split for r in a.images] == [r.split for r in b.images]
    counts = {s: sum(r.split == s for r in a.images) for s in ("train", "val", "test")}
    assert 150 < counts["val"] < 250 and 330 < counts["test"] < 470
    c = assign_splits(ds, seed=1)
    assert [r.split for r in c.images] != [r.split for r in a.images]
    # stable across processes: a fixed expectation, not Python's salted hash()
    assert assign_splits(ds).images[0].split == assign_splits(ds).images[0].split
    kept = assign_splits(
        DetectionDataset(Path("."), (), [ImageRecord(1, "x.jpg", 1, 1, split="test")])
    )
    assert kept.images[0].split == "test"


def test_writer_escapes_and_round_trips(tmp_path):
    root = tmp_path / "out"
    make_image(root / "defect_Images/a.jpg")
    make_image(root / "normal_Images/n.jpg")
    ds = DetectionDataset(
        root,
        TIANCHI_CATEGORIES,
        [
            ImageRecord(
                1,
                "defect_Images/a.jpg",
                W,
                H,
                [Instance((1.0, 2.0, 10.5, 20.0), 2, raw_name="油渍"), Instance((0, 0, 5, 5), 16)],
                split="train",
            ),
            ImageRecord(2, "normal_Images/n.jpg", W, H, [], split="val"),
        ],
    )
    write_tianchi(ds, root)
    text = (root / "Annotations/anno_train.json").read_text()
    assert text.isascii() and "\\u6cb9\\u6e0d" in text
    records = json.loads(text)
    assert records[1] == {"name": "a.jpg", "defect_name": "星跳", "bbox": [0.0, 0.0, 5.0, 5.0]}
    back = load_dataset(root)
    assert [(i.box, i.category_id, i.raw_name) for i in back.images[0].instances] == [
        ((1.0, 2.0, 10.5, 20.0), 2, "油渍"),
        ((0.0, 0.0, 5.0, 5.0), 16, "星跳"),
    ]
    assert [r.split for r in back.images] == ["train", "val"]


def test_writer_refuses_category_without_tianchi_name(tmp_path):
    from fabricdet.data.categories import Category

    ds = DetectionDataset(
        tmp_path,
        (Category(1, "person"),),
        [ImageRecord(1, "a.jpg", 10, 10, [Instance((0, 0, 1, 1), 1)])],
    )
    with pytest.raises(DataError, match="no Tianchi defect name"):
        write_tianchi(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


# ----------------------------------------------------------------------------- validation

BAD_CASES = [
    # (record, kind, text expected in the message)
    ({"name": "zz.jpg", "defect_name": "破洞", "bbox": [1, 1, 5, 5]}, "missing-image", "zz.jpg"),
    ({"name": "a.jpg", "defect_name": "坏了", "bbox": [1, 1, 5, 5]}, "unknown-name", "破洞, 水渍"),
    ({"name": "a.jpg", "defect_name": "破洞", "bbox": [1, 1, 80, 5]}, "box-outside", "64x32"),
    ({"name": "a.jpg", "defect_name": "破洞", "bbox": [5, 1, 5, 5]}, "bad-box", "x2 <= x1"),
    ({"name": "a.jpg", "defect_name": "破洞", "bbox": [9, 1, 5, 5]}, "bad-box", "x2 <= x1"),
    (
        {"name": "a.jpg", "defect_name": "破洞", "bbox": [1, float("nan"), 5, 5]},
        "non-finite",
        "NaN",
    ),
    (
        {"name": "a.jpg", "defect_name": "破洞", "bbox": [1, 1, float("inf"), 5]},
        "non-finite",
        "NaN",
    ),
    ({"name": "a.jpg", "defect_name": "破洞", "bbox": [1, 1, 5]}, "malformed-record", "4 numbers"),
    ({"name": "a.jpg", "bbox": [1, 1, 5, 5]}, "malformed-record", "missing"),
]


@pytest.mark.parametrize(("bad", "kind", "text"), BAD_CASES)
def test_strict_error_names_file_record_and_fix(tianchi_folder, basic_records, bad, kind, text):
    root = tianchi_folder([*basic_records, bad])
    with pytest.raises(InvalidDataError) as info:
        read_tianchi(root)
    msg = str(info.value)
    assert "anno_train.json" in msg and "record [3]" in msg and "Fix:" in msg and text in msg
    assert [p.kind for p in info.value.problems] == [kind]


@pytest.mark.parametrize(("bad", "kind", "text"), BAD_CASES)
def test_lenient_skips_and_reports(tianchi_folder, basic_records, bad, kind, text):
    ds, report = read_tianchi(tianchi_folder([*basic_records, bad]), strict=False)
    assert [p.kind for p in report.skipped] == [kind]
    assert sum(len(r.instances) for r in ds.images) == 3  # the good records all kept
    assert "record [3]" in report.format()


def test_tolerance_clips_small_overshoot(tianchi_folder):
    recs = [{"name": "a.jpg", "defect_name": "破洞", "bbox": [-0.8, 0, 64.9, 32.5]}]
    ds, _ = read_tianchi(tianchi_folder(recs))
    assert ds.images[0].instances[0].box == (0.0, 0.0, 64.0, 32.0)


def test_duplicates(tianchi_folder, basic_records):
    root = tianchi_folder([*basic_records, dict(basic_records[0])])
    with pytest.raises(InvalidDataError, match=r"record \[3\].*duplicates record \[0\]"):
        read_tianchi(root)
    ds, report = read_tianchi(root, strict=False)
    assert len(ds.images[0].instances) == 2 and report.skipped[0].kind == "duplicate"


def test_unreadable_image(tianchi_folder, basic_records):
    root = tianchi_folder(basic_records)
    (root / "defect_Images/b.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InvalidDataError, match=r"b\.jpg.*not a readable image") as info:
        read_tianchi(root)
    assert info.value.problems[0].kind == "unreadable-image"
    ds, report = read_tianchi(root, strict=False)
    assert [r.file_name for r in ds.images] == ["defect_Images/a.jpg", "normal_Images/n.jpg"]
    assert [p.kind for p in report.skipped] == ["unreadable-image"]


def test_many_problems_listed_with_count(tianchi_folder):
    recs = [{"name": f"x{k}.jpg", "defect_name": "破洞", "bbox": [1, 1, 2, 2]} for k in range(30)]
    with pytest.raises(InvalidDataError) as info:
        read_tianchi(tianchi_folder(recs))
    msg = str(info.value)
    assert msg.startswith("30 problems found") and "... and 10 more" in msg
    assert len(info.value.problems) == 30


def test_malformed_json_names_line(tmp_path):
    root = write_tianchi_folder(tmp_path / "ds", [])
    (root / "Annotations/anno_train.json").write_text('[\n{"name": "a.jpg",\n "bbox": [1, 2,]}\n]')
    with pytest.raises(InvalidDataError, match=r"anno_train\.json: malformed JSON at line 3"):
        read_tianchi(root)
    with pytest.raises(InvalidDataError, match="malformed JSON"):
        read_tianchi(root, strict=False)  # nothing to skip to: fatal in both modes


def test_missing_annotation_file(tmp_path):
    make_image(tmp_path / "ds/defect_Images/a.jpg")
    with pytest.raises(DataError, match=r"anno_train\.json: annotation file not found.*Fix"):
        load_dataset(tmp_path / "ds")


def test_image_ids_follow_names_not_folders(tianchi_folder, basic_records):
    ds, _ = read_tianchi(
        tianchi_folder(basic_records, defect=("b.jpg", "c.jpg"), normal=("a.jpg",))
    )
    assert [(r.image_id, r.file_name) for r in ds.images] == [
        (1, "normal_Images/a.jpg"),
        (2, "defect_Images/b.jpg"),
        (3, "defect_Images/c.jpg"),
    ]


def test_unannotated_defect_image_is_a_warning(tianchi_folder, basic_records):
    ds, report = read_tianchi(tianchi_folder(basic_records, defect=("a.jpg", "b.jpg", "c.jpg")))
    assert [w.kind for w in report.warnings] == ["unannotated-defect-image"]
    assert ds.images[2].file_name == "defect_Images/c.jpg" and ds.images[2].instances == []
