"""Writing a synthetic dataset: layout, schemas, splits, determinism across worker counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID
from fabricdet.data.formats import read_coco, read_tianchi
from fabricdet.data.synth import SynthError, generate_dataset, load_or_generate

SIZE = (384, 192)
N = 14


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, N, seed=7, size=SIZE, workers=1, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_bytes_for_any_worker_count(dataset_dir: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path / "w2", N, seed=7, size=SIZE, workers=2, progress=False)
    assert _files(dataset_dir) == _files(tmp_path / "w2")


def test_tianchi_layout_and_anno_train_schema(dataset_dir: Path) -> None:
    defect = sorted(p.name for p in (dataset_dir / "defect_Images").iterdir())
    normal = sorted(p.name for p in (dataset_dir / "normal_Images").iterdir())
    assert len(defect) + len(normal) == N and defect and normal
    text = (dataset_dir / "Annotations" / "anno_train.json").read_text(encoding="utf-8")
    assert text.isascii() and "\\u" in text, "raw names are \\uXXXX-escaped as in Tianchi"
    records = json.loads(text)
    assert isinstance(records, list) and records
    for rec in records:
        assert set(rec) == {"name", "defect_name", "bbox"}
        assert rec["name"] in defect and rec["name"] not in normal
        assert rec["defect_name"] in TIANCHI_RAW_TO_ID
        x1, y1, x2, y2 = rec["bbox"]
        assert all(isinstance(v, float) for v in rec["bbox"])
        assert 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1]
    assert {r["name"] for r in records} == set(defect)


def test_coco_files_hold_exact_masks_and_splits(dataset_dir: Path) -> None:
    ann = dataset_dir / "Annotations"
    splits = json.loads((ann / "splits.json").read_text())
    names = [n for s in ("train", "val", "test") for n in splits[s]]
    assert len(names) == len(set(names)) == N
    assert len(splits["train"]) > len(splits["val"])
    seen = []
    for split in ("train", "val", "test"):
        coco = json.loads((ann / f"instances_{split}.json").read_text())
        cats = {c["id"]: c for c in coco["categories"]}
        assert set(cats) == {c.id for c in TIANCHI_CATEGORIES}
        assert cats[10]["name"] == "broken-warp" and cats[10]["raw_names"] == ["断经"]
        files = {im["id"]: im["file_name"] for im in coco["images"]}
        assert sorted(files.values()) == sorted(splits[split])
        seen += files.values()
        for a in coco["annotations"]:
            assert files[a["image_id"]].startswith("defect_Images/")
            rle = a["segmentation"]
            assert isinstance(rle["counts"], str) and rle["size"] == [SIZE[1], SIZE[0]]
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x, y, w, h = a["bbox"]
            assert (x, y, x + w, y + h) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert a["area"] == mask.sum() > 0
    assert sorted(seen) == sorted(names)
    assert all((dataset_dir / n).is_file() for n in names)


def test_readers_load_what_was_written(dataset_dir: Path) -> None:
    tianchi, report = read_tianchi(dataset_dir)
    assert report.clean and len(tianchi.images) == N
    coco, _ = read_coco(dataset_dir / "Annotations" / "instances_train.json")
    assert coco.images and all(r.split == "train" for r in coco.images)


def test_a_reused_dataset_keeps_its_masks(dataset_dir: Path, tmp_path: Path) -> None:
    # The benchmarks resume on a rendered folder; its Tianchi file holds boxes only, so the
    # masks must come back from the COCO files (Mask R-CNN trains on them).
    written = generate_dataset(tmp_path / "ds", N, seed=7, size=SIZE, workers=1, progress=False)
    reused = load_or_generate(tmp_path / "ds", N, seed=7, size=SIZE, progress=False)
    pairs = [
        (a, b)
        for ra, rb in zip(written.images, reused.images, strict=True)
        for a, b in zip(ra.instances, rb.instances, strict=True)
    ]
    assert pairs and all(a.mask is not None and a.mask == b.mask for a, b in pairs)
    # a folder of another size or count is refused, not trained on as if it were the one asked
    other = (SIZE[0] // 2, SIZE[1] // 2)
    with pytest.raises(SynthError, match=rf"holds {N} images of {SIZE[0]}x{SIZE[1]}.*another"):
        load_or_generate(tmp_path / "ds", N, seed=7, size=other, progress=False)
    with pytest.raises(SynthError, match=f"not the {N + 1} of"):
        load_or_generate(tmp_path / "ds", N + 1, seed=7, size=SIZE, progress=False)
    # an edited folder is refused, not silently mixed
    coco = tmp_path / "ds" / "Annotations" / "instances_train.json"
    data = json.loads(coco.read_text())
    data["annotations"][0]["bbox"][0] += 5
    coco.write_text(json.dumps(data))
    with pytest.raises(SynthError, match="render the dataset again"):
        load_or_generate(tmp_path / "ds", N, seed=7, size=SIZE, progress=False)


def test_refuses_to_overwrite_without_permission(dataset_dir: Path) -> None:
    with pytest.raises(SynthError, match="--overwrite"):
        generate_dataset(dataset_dir, 2, size=SIZE, workers=1, progress=False)


def test_defect_free_share_on_disk(tmp_path: Path) -> None:
    ds = generate_dataset(tmp_path / "d", 60, seed=3, size=(128, 64), workers=1, progress=False)
    free = sum(1 for r in ds.images if not r.instances) / len(ds.images)
    assert 0.2 < free < 0.56
