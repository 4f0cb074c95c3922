"""COCO reader/writer: polygons, uncompressed and compressed RLE, crowd, roots, splits, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from formats_testdata import H, W, make_image
from pycocotools import mask as mask_utils

from fabricdet.data.formats import (
    InvalidDataError,
    crowd_of,
    load_dataset,
    read_coco,
    write_coco,
)
from fabricdet.data.formats.rle import decode_mask, encode_mask


def _square_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def _coco(tmp: Path, anns: list[dict], *, images: list[dict] | None = None, name: str = "c.json"):
    make_image(tmp / "a.jpg")
    make_image(tmp / "b.jpg")
    data = {
        "images": images
        if images is not None
        else [
            {"id": 7, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 9, "file_name": "b.jpg", "width": W, "height": H, "split": "val"},
        ],
        "annotations": anns,
        "categories": [{"id": 5, "name": "knot"}, {"id": 2, "name": "hole", "raw_names": ["破洞"]}],
    }
    path = tmp / name
    path.write_text(json.dumps(data))
    return path


def test_reads_boxes_masks_and_categories(tmp_path):
    sq = _square_mask(10, 4, 20, 12)
    unc = mask_utils.encode(np.asfortranarray(sq))
    # uncompressed RLE: run lengths in column-major order
    flat = sq.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [
        {
            "id": 1,
            "image_id": 7,
            "category_id": 5,
            "bbox": [10, 4, 10, 8],
            "iscrowd": 0,
            "segmentation": [[10, 4, 20, 4, 20, 12, 10, 12]],
        },
        {
            "id": 2,
            "image_id": 7,
            "category_id": 2,
            "bbox": [10, 4, 10, 8],
            "iscrowd": 0,
            "segmentation": {"size": [H, W], "counts": runs},
        },
        {
            "id": 3,
            "image_id": 9,
            "category_id": 2,
            "bbox": [10, 4, 10, 8],
            "iscrowd": 0,
            "segmentation": {"size": [H, W], "counts": unc["counts"].decode()},
        },
        {"id": 4, "image_id": 9, "category_id": 5, "bbox": [0, 0, 30, 30], "iscrowd": 1},
    ]
    ds, report = read_coco(_coco(tmp_path, anns))
    assert report.clean
    assert [c.id for c in ds.categories] == [2, 5]  # ordered by id -> labels 0, 1
    assert ds.label_of(5) == 1 and ds.categories[0].raw_names == ("破洞",)
    a, b = ds.images
    assert (a.image_id, b.image_id, a.split, b.split) == (7, 9, None, "val")
    assert [i.box for i in a.instances] == [(10.0, 4.0, 20.0, 12.0)] * 2
    for inst in [*a.instances, *b.instances]:
        assert isinstance(inst.mask["counts"], str)
        assert np.array_equal(decode_mask(inst.mask), sq.astype(bool))
    assert len(b.instances) == 1  # the crowd region is not a training instance ...
    assert [c.box for c in crowd_of(b)] == [(0.0, 0.0, 30.0, 30.0)]  # ... but is kept


def test_split_from_file_name(tmp_path):
    ds = load_dataset(_coco(tmp_path, [], name="instances_train.json"))
    assert [r.split for r in ds.images] == ["train", "val"]  # an image's own key wins
    assert [r.split for r in load_dataset(_coco(tmp_path, [], name="x.json")).images] == [
        None,
        "val",
    ]


def test_image_root_resolution(tmp_path):
    ann_dir = tmp_path / "Annotations"
    ann_dir.mkdir()
    path = _coco(tmp_path, [])
    moved = ann_dir / "c.json"
    path.rename(moved)
    assert load_dataset(moved).root == tmp_path  # the JSON's parent folder
    other = tmp_path / "elsewhere" / "deeper" / "c.json"
    other.parent.mkdir(parents=True)
    moved.rename(other)
    with pytest.raises(InvalidDataError, match=r"cannot find the first image 'a\.jpg'.*image-root"):
        load_dataset(other)
    assert load_dataset(other, image_root=tmp_path).root == tmp_path


def test_write_coco_round_trip(tmp_path):
    ds, _ = read_coco(
        _coco(
            tmp_path,
            [
                {
                    "id": 1,
                    "image_id": 7,
                    "category_id": 5,
                    "bbox": [1.5, 2, 3, 4],
                    "segmentation": [[1, 2, 4, 2, 4, 6]],
                    "raw_name": "结头",
                },
                {"id": 2, "image_id": 9, "category_id": 2, "bbox": [0, 0, 6, 6], "iscrowd": 1},
            ],
        )
    )
    out = tmp_path / "out.json"
    write_coco(ds, out)
    data = json.loads(out.read_text())
    assert data["categories"][0] == {
        "id": 2,
        "name": "hole",
        "supercategory": "defect",
        "raw_names": ["破洞"],
    }
    assert data["images"][1]["split"] == "val" and "split" not in data["images"][0]
    ann = data["annotations"][0]
    assert ann["bbox"] == [1.5, 2.0, 3.0, 4.0] and isinstance(ann["segmentation"]["counts"], str)
    assert ann["raw_name"] == "结头" and data["annotations"][1]["iscrowd"] == 1
    back = load_dataset(out)
    assert back.images[0].instances[0].box == ds.images[0].instances[0].box
    assert back.images[0].instances[0].mask == ds.images[0].instances[0].mask
    assert crowd_of(back.images[1])[0].box == (0.0, 0.0, 6.0, 6.0)


def _one(ann: dict) -> dict:
    return {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 1, 4, 4], **ann}


COCO_BAD = [
    (_one({"image_id": 99}), "unknown-image", "image_id 99"),
    (_one({"category_id": 3}), "unknown-category", "ids in categories: [2, 5]"),
    (_one({"bbox": [1, 1, -4, 4]}), "bad-box", "x2 <= x1"),
    (_one({"bbox": [1, 1, 100, 4]}), "box-outside", "outside"),
    (_one({"bbox": [1, float("nan"), 4, 4]}), "non-finite", "NaN"),
    (_one({"segmentation": [[1, 2, 3]]}), "bad-mask", "polygon"),
    (_one({"segmentation": {"size": [5, 5], "counts": "abc"}}), "bad-mask", "does not match"),
    (_one({"segmentation": {"size": [H, W], "counts": [3, 4]}}), "bad-mask", "sum to 7"),
]


@pytest.mark.parametrize(("ann", "kind", "text"), COCO_BAD)
def test_coco_validation(tmp_path, ann, kind, text):
    good = _one({"id": 5, "bbox": [2, 2, 3, 3]})
    path = _coco(tmp_path, [good, ann])
    with pytest.raises(InvalidDataError) as info:
        read_coco(path)
    msg = str(info.value)
    assert "c.json, annotations[1]" in msg and text in msg and "Fix:" in msg
    assert [p.kind for p in info.value.problems] == [kind]
    ds, report = read_coco(path, strict=False)
    assert [p.kind for p in report.skipped] == [kind]
    assert sum(len(r.instances) for r in ds.images) == 1


def test_coco_image_problems(tmp_path):
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 10, "height": H},  # wrong width
        {"id": 8, "file_name": "missing.jpg", "width": W, "height": H},
        {"id": 9, "file_name": "b.jpg", "width": W, "height": H},
        {"id": 9, "file_name": "b2.jpg"},  # repeated id
    ]
    anns = [
        _one({"image_id": 8}),
        _one({"image_id": 9}),
        _one({"image_id": 9, "bbox": [1, 1, 4, 4]}),
    ]
    path = _coco(tmp_path, anns, images=images)
    with pytest.raises(InvalidDataError) as info:
        read_coco(path)
    kinds = [p.kind for p in info.value.problems]
    assert kinds == ["duplicate", "size-mismatch", "missing-image", "duplicate"]
    ds, report = read_coco(path, strict=False)
    assert [r.image_id for r in ds.images] == [9] and len(report.skipped) == 4


def test_malformed_coco(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"images": [}')
    with pytest.raises(InvalidDataError, match="line 1, column 13"):
        read_coco(path)
    path.write_text("[]")
    with pytest.raises(InvalidDataError, match="not a COCO instances file"):
        read_coco(path)


def test_encode_decode_mask_roundtrip():
    m = _square_mask(3, 3, 9, 5)
    rle = encode_mask(m)
    assert isinstance(rle["counts"], str) and np.array_equal(decode_mask(rle), m.astype(bool))
