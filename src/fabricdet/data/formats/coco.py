"""Reading a COCO instances JSON file.

- Boxes: COCO ``[x, y, w, h]`` becomes xyxy ``(x, y, x + w, y + h)``.
- Masks: polygons, uncompressed RLE and compressed RLE all become compressed RLE.
- Crowd (``iscrowd=1``) annotations stay out of ``instances`` (nothing to learn from) and go to
  the record's ``crowd`` list, where the metrics find them (see :mod:`.crowd`).
- Category ids are kept as in the file; categories are ordered by id, which fixes the labels.
- Splits: an image's ``"split"`` key, else the file name (``instances_val2017.json`` -> val).
- ``file_name`` is resolved against ``image_root`` when given, else the first of: the JSON's
  folder, its parent, ``images/`` in either, that holds the first image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, Instance
from fabricdet.data.formats.box_checks import as_four_numbers, check_box
from fabricdet.data.formats.crowd import CrowdImageRecord
from fabricdet.data.formats.image_size import read_image_sizes
from fabricdet.data.formats.json_file import read_json
from fabricdet.data.formats.problems import (
    LENIENT_HINT,
    LoadReport,
    Problem,
    ProblemLog,
    RecordError,
    fatal,
)
from fabricdet.data.formats.rle import rle_bbox, segmentation_to_rle
from fabricdet.data.formats.splits import normalise_split

_SPLIT_IN_NAME = re.compile(r"(?:^|[_\-.])(train|val|valid|test)(?:\d{4})?\.json$", re.I)


def split_from_file_name(path: Path) -> str | None:
    """The split a COCO file's name implies (``instances_train.json`` -> ``"train"``)."""
    m = _SPLIT_IN_NAME.search(path.name)
    return normalise_split(m.group(1)) if m else None


def image_root_candidates(json_path: Path) -> list[Path]:
    """Folders tried, in order, to resolve ``file_name`` when no image root is given."""
    here = json_path.parent
    return [here, here.parent, here / "images", here.parent / "images"]


def _resolve_root(
    json_path: Path, images: list[Any], image_root: Path | None, check_images: bool
) -> Path:
    if image_root is not None:
        return Path(image_root)
    candidates = image_root_candidates(json_path)
    first = next(
        (im["file_name"] for im in images if isinstance(im, dict) and "file_name" in im), None
    )
    if not isinstance(first, str):
        return candidates[0]
    for folder in candidates:
        if (folder / first).is_file():
            return folder
    if not check_images:
        return candidates[0]
    tried = ", ".join(str(c) for c in candidates)
    raise fatal(
        "missing-image",
        json_path,
        f"cannot find the first image {first!r} under any of: {tried}",
        "pass the folder that file_name is relative to (--image-root / image_root=)",
        record='images[0] file_name="' + first + '"',
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _read_categories(path: Path, data: dict[str, Any]) -> tuple[Category, ...]:
    cats = data.get("categories")
    if not isinstance(cats, list):
        raise fatal(
            "malformed-json",
            path,
            'no "categories" list',
            'add "categories": [{"id": 1, "name": "..."}, ...]',
        )
    out: dict[int, Category] = {}
    for j, c in enumerate(cats):
        cid = _int(c.get("id")) if isinstance(c, dict) else None
        if cid is None or not isinstance(c.get("name"), str) or cid in out:
            raise fatal(
                "malformed-record",
                path,
                "needs an integer id (unique) and a string name",
                "fix the category entry",
                record=f"categories[{j}]",
            )
        raw = c.get("raw_names") or ()
        raw_names = tuple(r for r in raw if isinstance(r, str)) if isinstance(raw, list) else ()
        out[cid] = Category(cid, c["name"], raw_names)
    return tuple(out[k] for k in sorted(out))


def read_coco(
    path: Path,
    *,
    strict: bool = True,
    image_root: Path | None = None,
    check_images: bool = True,
) -> tuple[DetectionDataset, LoadReport]:
    """Read a COCO instances JSON file (see the module docstring for the conventions).

    Image sizes are read from the image headers (which also checks that each image exists and
    is readable); a size that disagrees with the JSON's width/height is an error. With
    ``check_images=False`` the images are not opened and the JSON's width/height are trusted
    (scoring predictions needs no pixels).

    Raises:
        InvalidDataError: (strict) every bad record, listed; (both modes) a missing or
            malformed JSON file, or images that cannot be found at all.
    """
    path = Path(path)
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise fatal(
            "malformed-json",
            path,
            'not a COCO instances file (expected an object with an "images" list)',
            'write {"images": [...], "annotations": [...], "categories": [...]}',
        )
    categories = _read_categories(path, data)
    known_cats = {c.id for c in categories}
    root = _resolve_root(path, data["images"], image_root, check_images)
    log = ProblemLog(strict)
    file_split = split_from_file_name(path)

    records: dict[int, CrowdImageRecord] = {}
    skipped_ids: set[int] = set()  # images left out; their annotations go silently with them
    seen_files: dict[str, int] = {}
    seen_ids: set[int] = set()
    entries: list[tuple[int, dict[str, Any]]] = []
    for j, im in enumerate(data["images"]):
        where = f"images[{j}]"
        iid = _int(im.get("id")) if isinstance(im, dict) else None
        name = im.get("file_name") if isinstance(im, dict) else None
        if iid is None or not isinstance(name, str):
            log.skip(
                Problem(
                    "malformed-record",
                    path,
                    where,
                    "an image needs an integer id and a string file_name",
                    "fix the image entry",
                )
            )
            continue
        where = f'images[{j}] id={iid} file_name="{name}"'
        if iid in seen_ids or name in seen_files:
            log.skip(
                Problem(
                    "duplicate",
                    path,
                    where,
                    "repeats an image id or file_name of an earlier image",
                    f"give every image a unique id and file, {LENIENT_HINT}",
                )
            )
            continue
        seen_files[name] = iid
        seen_ids.add(iid)
        entries.append((j, im))

    if check_images:
        sizes = read_image_sizes([root / im["file_name"] for _, im in entries])
    else:
        sizes = [_declared_size(im) for _, im in entries]
    for (j, im), size in zip(entries, sizes, strict=True):
        iid, name = int(im["id"]), im["file_name"]
        where = f'images[{j}] id={iid} file_name="{name}"'
        skipped_ids.add(iid)  # until it passes every check below
        if isinstance(size, str):
            kind = "missing-image" if size == "file not found" else "unreadable-image"
            log.skip(
                Problem(
                    kind,
                    path,
                    where,
                    f"{root / name}: {size}; the image and its annotations are skipped",
                    f"add or repair the image, {LENIENT_HINT}",
                )
            )
            continue
        w, h = _int(im.get("width")), _int(im.get("height"))
        if (w is not None or h is not None) and (w, h) != size:
            log.skip(
                Problem(
                    "size-mismatch",
                    path,
                    where,
                    f"width/height say {w}x{h} but the image is {size[0]}x{size[1]}",
                    "correct width and height (or the image)",
                )
            )
            continue
        split = None
        if "split" in im:
            split = normalise_split(str(im["split"]))
            if split is None:
                log.skip(
                    Problem(
                        "malformed-record",
                        path,
                        where,
                        f"unknown split {im['split']!r}",
                        'use "train", "val" or "test"',
                    )
                )
                continue
        skipped_ids.discard(iid)
        records[iid] = CrowdImageRecord(
            image_id=iid,
            file_name=name,
            width=size[0],
            height=size[1],
            split=split if split is not None else file_split,
        )

    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise fatal("malformed-json", path, '"annotations" is not a list', "fix the file")
    seen: dict[tuple[int, int, tuple[float, ...]], int] = {}
    for j, ann in enumerate(annotations):
        where = _ann_where(j, ann)
        if isinstance(ann, dict) and _int(ann.get("image_id")) in skipped_ids:
            continue
        try:
            iid, inst, crowd = _parse_annotation(ann, records, known_cats)
        except RecordError as err:
            log.skip(err.at(path, where))
            continue
        if crowd:
            records[iid].crowd.append(inst)
            continue
        key = (iid, inst.category_id, inst.box)
        if key in seen:
            log.skip(
                Problem(
                    "duplicate",
                    path,
                    where,
                    f"duplicates annotations[{seen[key]}] (same image, category and box)",
                    f"remove the repeated annotation, {LENIENT_HINT}",
                )
            )
            continue
        seen[key] = j
        records[iid].instances.append(inst)

    report = log.finish()
    return DetectionDataset(root, categories, list(records.values())), report


def _declared_size(im: dict[str, Any]) -> tuple[int, int] | str:
    w, h = _int(im.get("width")), _int(im.get("height"))
    if w is None or h is None or w <= 0 or h <= 0:
        return "no valid width/height in the JSON (needed when images are not opened)"
    return (w, h)


def _ann_where(j: int, ann: object) -> str:
    if not isinstance(ann, dict):
        return f"annotations[{j}]"
    return f"annotations[{j}] id={ann.get('id')} image_id={ann.get('image_id')}"


def _parse_annotation(
    ann: object, records: dict[int, CrowdImageRecord], known_cats: set[int]
) -> tuple[int | None, Instance, bool]:
    """``(image_id, instance, is_crowd)``; ``image_id`` is ``None`` for a skipped image."""
    if not isinstance(ann, dict):
        raise RecordError("malformed-record", "expected an object", "fix the annotation")
    iid = _int(ann.get("image_id"))
    if iid is None:
        raise RecordError("malformed-record", "image_id is not an integer", "fix image_id")
    cid = _int(ann.get("category_id"))
    if cid is None or cid not in known_cats:
        raise RecordError(
            "unknown-category",
            f"unknown category_id {ann.get('category_id')!r}",
            f"use one of the ids in categories: {sorted(known_cats)}",
        )
    rec = records.get(iid)
    if rec is None:
        raise RecordError(
            "unknown-image",
            f"image_id {iid} is not in the images list",
            "fix image_id or add the image",
        )
    mask = None
    seg = ann.get("segmentation")
    if seg not in (None, [], {}):
        mask = segmentation_to_rle(seg, rec.height, rec.width)
    if "bbox" in ann:
        x, y, w, h = as_four_numbers(ann["bbox"])
        box = (x, y, x + w, y + h)
    elif mask is not None:
        box = rle_bbox(mask)
    else:
        raise RecordError("malformed-record", "no bbox and no segmentation", "add a bbox")
    box = check_box(box, rec.width, rec.height)
    raw = ann.get("raw_name")
    inst = Instance(
        box=box, category_id=cid, mask=mask, raw_name=raw if isinstance(raw, str) else None
    )
    return iid, inst, bool(ann.get("iscrowd", 0))
