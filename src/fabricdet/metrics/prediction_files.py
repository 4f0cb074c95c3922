"""Prediction files: the Tianchi submission and the COCO results format.

- Tianchi submission: ``[{"name": "a.jpg", "category": 3, "bbox": [x1, y1, x2, y2],
  "score": 0.9}, ...]``. ``name`` is the image's Tianchi name (the file name without
  ``defect_Images/`` / ``normal_Images/``; the full relative file name is accepted too).
  ``category`` is a category id; a raw Tianchi name or a category name is accepted too.
- COCO results: ``[{"image_id": 1, "category_id": 3, "bbox": [x, y, w, h], "score": 0.9,
  "segmentation": RLE (optional)}, ...]``.

Both are validated against the dataset they are scored on: unknown images or categories,
non-finite or inverted boxes and non-finite scores are errors naming the record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.atomic import atomic_write_text, json_lines_list
from fabricdet.data.formats.box_checks import as_four_numbers
from fabricdet.data.formats.json_file import read_json
from fabricdet.data.formats.problems import InvalidDataError, Problem, RecordError, fatal
from fabricdet.data.formats.rle import rle_bbox, segmentation_to_rle
from fabricdet.data.formats.tianchi import normalise_raw_name, tianchi_image_name
from fabricdet.metrics.predictions import Predictions

PREDICTION_FORMATS = ("tianchi", "coco")


def _score(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(
            "bad-score", f"score {value!r} is not a finite number", "write a finite score"
        )
    return float(value)


def _check_xyxy(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if box[2] < box[0] or box[3] < box[1]:
        raise RecordError(
            "bad-box",
            f"box {list(box)} has x2 < x1 or y2 < y1",
            "write boxes as [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1",
        )
    return box


def _image_lookup(dataset: DetectionDataset) -> dict[str, int]:
    """Submission name -> image id: the full file name, and the Tianchi name when unique."""
    lookup: dict[str, int] = {}
    short: dict[str, list[int]] = {}
    for rec in dataset.images:
        lookup[rec.file_name] = rec.image_id
        short.setdefault(tianchi_image_name(rec.file_name), []).append(rec.image_id)
    for name, ids in short.items():
        if len(ids) == 1:
            lookup.setdefault(name, ids[0])
    return lookup


def _category_lookup(dataset: DetectionDataset) -> dict[object, int]:
    """Category id, English name or raw name -> category id."""
    lookup: dict[object, int] = {}
    for c in dataset.categories:
        lookup[c.id] = c.id
        lookup[c.name] = c.id
        for raw in c.raw_names:
            lookup[raw] = c.id
    return lookup


def detect_prediction_format(data: object, path: Path) -> str:
    """``"tianchi"`` or ``"coco"`` from the keys of the first record."""
    if not isinstance(data, list):
        raise fatal(
            "malformed-json",
            path,
            f"a prediction file is a JSON list of detections, got a {type(data).__name__}",
            "write a Tianchi submission or a COCO results list",
        )
    if not data:
        return "coco"
    first = data[0]
    if isinstance(first, dict) and "name" in first:
        return "tianchi"
    if isinstance(first, dict) and "image_id" in first:
        return "coco"
    raise fatal(
        "unknown-format",
        path,
        "cannot tell the prediction format from the first record",
        'use Tianchi records ({"name", "category", "bbox", "score"}) or COCO results '
        '({"image_id", "category_id", "bbox", "score"})',
        record="record [0]",
    )


def read_predictions(path: Path, dataset: DetectionDataset) -> Predictions:
    """Read a Tianchi submission or COCO results file (detected), validated against ``dataset``.

    Raises:
        InvalidDataError: every bad record, listed (malformed JSON: file, line and column).
    """
    path = Path(path)
    data = read_json(path, "prediction file")
    fmt = detect_prediction_format(data, path)
    parse = _parse_tianchi if fmt == "tianchi" else _parse_coco
    images = _image_lookup(dataset) if fmt == "tianchi" else {r.image_id: r for r in dataset.images}
    cats = _category_lookup(dataset)
    problems: list[Problem] = []
    rows: list[tuple[int, int, tuple[float, ...], float, Any]] = []
    for i, rec in enumerate(data):
        try:
            rows.append(parse(rec, images, cats, dataset))
        except RecordError as err:
            problems.append(err.at(path, f"record [{i}]"))
    if problems:
        raise InvalidDataError(problems)
    if not rows:
        return Predictions.empty()
    with_masks = all(r[4] is not None for r in rows)
    return Predictions(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows]),
        tuple(r[4] for r in rows) if with_masks else None,
    )


def _need_dict(rec: object, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(rec, dict) or any(k not in rec for k in keys):
        raise RecordError(
            "malformed-record",
            f"expected an object with keys {list(keys)}, got {str(rec)[:80]}",
            "write every record with those keys",
        )
    return rec


def _category(value: object, cats: dict[object, int]) -> int:
    key: object = value
    if isinstance(value, float) and value.is_integer():
        key = int(value)
    elif isinstance(value, str):
        key = int(value) if value.strip().isdigit() else normalise_raw_name(value)
    if isinstance(key, bool) or key not in cats:
        known = sorted(k for k in cats if isinstance(k, int))
        raise RecordError(
            "unknown-category", f"unknown category {value!r}", f"use a category id in {known}"
        )
    return cats[key]


def _parse_tianchi(
    rec: object, images: dict[Any, Any], cats: dict[object, int], dataset: DetectionDataset
) -> tuple[int, int, tuple[float, ...], float, None]:
    r = _need_dict(rec, ("name", "category", "bbox", "score"))
    name = str(r["name"]).strip()
    if name not in images:
        raise RecordError(
            "unknown-image",
            f"image {name!r} is not in the dataset",
            "score the submission against the dataset it was made for",
        )
    box = _check_xyxy(as_four_numbers(r["bbox"]))
    return images[name], _category(r["category"], cats), box, _score(r["score"]), None


def _parse_coco(
    rec: object, images: dict[Any, Any], cats: dict[object, int], dataset: DetectionDataset
) -> tuple[int, int, tuple[float, ...], float, Any]:
    r = _need_dict(rec, ("image_id", "category_id", "score"))
    iid = r["image_id"]
    if isinstance(iid, bool) or not isinstance(iid, int) or iid not in images:
        raise RecordError(
            "unknown-image",
            f"image_id {iid!r} is not in the dataset",
            "score the results against the dataset they were made for",
        )
    img = images[iid]
    mask = None
    if r.get("segmentation") not in (None, [], {}):
        mask = segmentation_to_rle(r["segmentation"], img.height, img.width)
    if "bbox" in r:
        x, y, w, h = as_four_numbers(r["bbox"])
        box = _check_xyxy((x, y, x + w, y + h))
    elif mask is not None:
        box = rle_bbox(mask)
    else:
        raise RecordError("malformed-record", "no bbox and no segmentation", "add a bbox")
    return iid, _category(r["category_id"], cats), box, _score(r["score"]), mask


def write_tianchi_submission(
    predictions: Predictions, dataset: DetectionDataset, path: Path
) -> None:
    """Write a Tianchi submission (one record per detection), atomically."""
    names = {r.image_id: tianchi_image_name(r.file_name) for r in dataset.images}
    predictions.check_against(dataset)
    records = [
        {
            "name": names[int(iid)],
            "category": int(cid),
            "bbox": [round(float(v), 4) for v in box],
            "score": round(float(s), 6),
        }
        for iid, cid, box, s in zip(
            predictions.image_ids,
            predictions.category_ids,
            predictions.boxes,
            predictions.scores,
            strict=True,
        )
    ]
    atomic_write_text(Path(path), json_lines_list(records))


def coco_results(predictions: Predictions, *, with_masks: bool = True) -> list[dict[str, Any]]:
    """COCO results dicts (fresh objects: pycocotools' ``loadRes`` mutates them)."""
    out = []
    for k in range(len(predictions)):
        x1, y1, x2, y2 = (float(v) for v in predictions.boxes[k])
        rec: dict[str, Any] = {
            "image_id": int(predictions.image_ids[k]),
            "category_id": int(predictions.category_ids[k]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(predictions.scores[k]),
        }
        if with_masks and predictions.masks is not None:
            m = predictions.masks[k]
            rec["segmentation"] = {"size": list(m["size"]), "counts": m["counts"]}
        out.append(rec)
    return out


def write_coco_results(predictions: Predictions, path: Path) -> None:
    """Write a COCO results JSON list (with RLE masks when present), atomically."""
    atomic_write_text(Path(path), json_lines_list(coco_results(predictions)))
