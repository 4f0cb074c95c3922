"""Writing a dataset as a COCO instances JSON (also the in-memory ground truth of the metrics).

What is written beyond standard COCO (other tools ignore unknown keys):
- ``categories[*].raw_names``: the raw names of each category (Tianchi: Chinese);
- ``annotations[*].raw_name``: the name the source file used for that object, when known;
- ``images[*].split``: ``"train"``, ``"val"`` or ``"test"``, when set.

Masks are compressed RLE with ``str`` counts. ``area`` is the mask area when there is a
mask, else the box area (as COCO does). ``file_name`` stays relative to ``dataset.root``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fabricdet.data.dataset import DetectionDataset, Instance
from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.data.formats.crowd import crowd_of
from fabricdet.data.formats.problems import InvalidDataError, Problem
from fabricdet.data.formats.rle import rle_area


def _annotation(
    inst: Instance, ann_id: int, image_id: int, iscrowd: int, where: str, root: Path
) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in inst.box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        raise InvalidDataError(
            [
                Problem(
                    "bad-box",
                    root,
                    where,
                    f"box {[x1, y1, x2, y2]} is not finite with x2 >= x1 and y2 >= y1",
                    "fix the box before writing",
                )
            ]
        )
    # pycocotools' convention: w = x2 - x1 (pixel-edge coordinates, no +1).
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(inst.category_id),
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": float((x2 - x1) * (y2 - y1)),
        "iscrowd": iscrowd,
    }
    if inst.mask is not None:
        counts = inst.mask["counts"]
        ann["segmentation"] = {
            "size": [int(inst.mask["size"][0]), int(inst.mask["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
        ann["area"] = float(rle_area(ann["segmentation"]))
    if inst.raw_name is not None:
        ann["raw_name"] = inst.raw_name
    return ann


def coco_dict(dataset: DetectionDataset) -> dict[str, Any]:
    """The COCO instances dict of a dataset (fresh objects: callers may mutate it).

    Annotation ids are 1..M in image order, crowd regions (``iscrowd=1``) after each image's
    instances. Categories are written in label order.

    Raises:
        InvalidDataError: a non-finite or inverted box, or an instance of an unknown category.
    """
    known = {c.id for c in dataset.categories}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for rec in dataset.images:
        img: dict[str, Any] = {
            "id": int(rec.image_id),
            "file_name": rec.file_name,
            "width": int(rec.width),
            "height": int(rec.height),
        }
        if rec.split is not None:
            img["split"] = rec.split
        images.append(img)
        for iscrowd, group in ((0, rec.instances), (1, crowd_of(rec))):
            for k, inst in enumerate(group):
                where = f"image {rec.file_name!r} {'crowd' if iscrowd else 'instance'} [{k}]"
                if inst.category_id not in known:
                    raise InvalidDataError(
                        [
                            Problem(
                                "unknown-category",
                                dataset.root,
                                where,
                                f"category id {inst.category_id} is not among the dataset's "
                                f"categories {sorted(known)}",
                                "add the category to dataset.categories or fix the instance",
                            )
                        ]
                    )
                ann = _annotation(
                    inst, len(annotations) + 1, rec.image_id, iscrowd, where, dataset.root
                )
                annotations.append(ann)
    categories = [
        {"id": int(c.id), "name": c.name, "supercategory": "defect", "raw_names": list(c.raw_names)}
        for c in dataset.categories
    ]
    return {
        "info": {"description": "written by fabricdet"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(dataset: DetectionDataset, path: Path) -> None:
    """Write ``dataset`` as a COCO instances JSON file at ``path``, atomically.

    ``file_name`` entries stay relative to ``dataset.root``; the reader finds the images when
    the JSON sits in the root or one folder below it (e.g. ``root/Annotations/``), otherwise
    pass ``image_root`` when reading. Images are not copied (``fabricdet convert`` does that).
    Nothing is written when validation fails; the dataset is not modified.
    """
    atomic_write_json(Path(path), coco_dict(dataset), ensure_ascii=False)
