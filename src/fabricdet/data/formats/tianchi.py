"""The Tianchi 2019 fabric-defect layout.

::

    root/
      defect_Images/*.jpg          images with at least one defect
      normal_Images/*.jpg          defect-free images (absent from the JSON)
      Annotations/anno_train.json  [{"name": "a.jpg", "defect_name": "破洞",
                                     "bbox": [x1, y1, x2, y2]}, ...]
      Annotations/splits.json      optional: {"train": [...], "val": [...], "test": [...]}

One JSON record per defect box; boxes are xyxy floats in absolute pixels. The official file
\\uXXXX-escapes the Chinese names; :func:`write_tianchi` does the same.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path, PurePosixPath

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID, Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.atomic import atomic_write_json, atomic_write_text, json_lines_list
from fabricdet.data.formats.box_checks import as_four_numbers, check_box
from fabricdet.data.formats.image_size import is_image_file, read_image_sizes
from fabricdet.data.formats.json_file import read_json
from fabricdet.data.formats.problems import (
    LENIENT_HINT,
    InvalidDataError,
    LoadReport,
    Problem,
    ProblemLog,
    RecordError,
    fatal,
)
from fabricdet.data.formats.splits import normalise_split, splits_dict

DEFECT_DIR = "defect_Images"
NORMAL_DIR = "normal_Images"
ANNOTATION_FILE = "Annotations/anno_train.json"
SPLITS_FILE = "Annotations/splits.json"

_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")
_KNOWN_NAMES = ", ".join(TIANCHI_RAW_TO_ID)


def normalise_raw_name(name: str) -> str:
    """A raw defect name as the category map spells it.

    Strips surrounding whitespace and decodes ``\\uXXXX`` sequences that arrive as literal
    text (a file escaped twice, or names copied from the escaped JSON).
    """
    name = name.strip()
    if "\\u" in name:
        name = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), name).strip()
    return name


def tianchi_image_name(file_name: str) -> str:
    """The ``name`` written in ``anno_train.json`` for a dataset file name.

    ``defect_Images/a.jpg`` -> ``a.jpg``; any other path -> its base name.
    """
    parts = PurePosixPath(file_name).parts
    if len(parts) > 1 and parts[0] in (DEFECT_DIR, NORMAL_DIR):
        return str(PurePosixPath(*parts[1:]))
    return parts[-1] if parts else file_name


def _list_images(root: Path, folder: str) -> list[str]:
    """Image file names (relative to ``root``) directly inside ``root/folder``, sorted."""
    path = root / folder
    if not path.is_dir():
        return []
    with os.scandir(path) as it:
        names = [e.name for e in it if e.is_file() and is_image_file(Path(e.name))]
    return sorted(f"{folder}/{n}" for n in names)


def _where(index: int, rec: object) -> str:
    name = rec.get("name") if isinstance(rec, dict) else None
    return f'record [{index}] name="{name}"' if isinstance(name, str) else f"record [{index}]"


def read_tianchi(root: Path, *, strict: bool = True) -> tuple[DetectionDataset, LoadReport]:
    """Read a Tianchi-layout folder.

    Image ids are 1..N in order of the Tianchi name (the file name without its folder).
    Categories are the 20 Tianchi categories
    (ids 1..20, labels 0..19) whether or not each occurs. Sizes come from image headers.

    Raises:
        InvalidDataError: (strict) every bad record, listed; (both modes) a missing or
            malformed annotation file.
    """
    root = Path(root)
    ann_path = root / ANNOTATION_FILE
    layout_fix = (
        f"a Tianchi dataset folder holds {DEFECT_DIR}/, {NORMAL_DIR}/ and {ANNOTATION_FILE}"
    )
    if not ann_path.is_file():
        raise fatal("missing-file", ann_path, "annotation file not found", layout_fix)
    data = read_json(ann_path, "Tianchi annotation file")
    if not isinstance(data, list):
        raise fatal(
            "malformed-json",
            ann_path,
            f"expected a JSON list of defect records, got a {type(data).__name__}",
            'write one {"name", "defect_name", "bbox"} record per defect box',
        )
    log = ProblemLog(strict)
    defect_files = _list_images(root, DEFECT_DIR)
    normal_files = _list_images(root, NORMAL_DIR)
    if not defect_files and not normal_files and not (root / DEFECT_DIR).is_dir():
        raise fatal("missing-file", root / DEFECT_DIR, "image folder not found", layout_fix)
    # JSON name -> file name; defect_Images wins when a name is in both folders.
    by_name = {tianchi_image_name(f): f for f in normal_files}
    by_name.update({tianchi_image_name(f): f for f in defect_files})

    parsed: list[tuple[int, str, str, int, tuple[float, float, float, float]]] = []
    for i, rec in enumerate(data):
        where = _where(i, rec)
        try:
            parsed.append((i, *_parse_record(rec, root, by_name)))
        except RecordError as err:
            log.skip(err.at(ann_path, where))

    # Ordered by Tianchi name, so an image keeps its id if it moves between the two folders.
    all_files = sorted(
        set(defect_files) | set(normal_files) | {p[1] for p in parsed},
        key=lambda f: (tianchi_image_name(f), f),
    )
    sizes = dict(zip(all_files, read_image_sizes([root / f for f in all_files]), strict=True))
    for f, size in sizes.items():
        if isinstance(size, str):
            n = sum(1 for p in parsed if p[1] == f)
            log.skip(
                Problem(
                    "unreadable-image",
                    root / f,
                    "",
                    f"{size}; its {n} record(s) are skipped",
                    f"replace the image with a readable copy, {LENIENT_HINT}",
                )
            )

    instances: dict[str, list[Instance]] = {f: [] for f in all_files}
    seen: dict[tuple[str, str, tuple[float, ...]], int] = {}
    for i, file_name, raw, cat_id, box in parsed:
        size = sizes[file_name]
        if isinstance(size, str):
            continue
        where = _where(i, data[i])
        try:
            clipped = check_box(box, size[0], size[1])
        except RecordError as err:
            log.skip(err.at(ann_path, where))
            continue
        key = (file_name, raw, box)
        if key in seen:
            log.skip(
                Problem(
                    "duplicate",
                    ann_path,
                    where,
                    f"duplicates record [{seen[key]}] (same image, defect name and box)",
                    f"remove the repeated record, {LENIENT_HINT}",
                )
            )
            continue
        seen[key] = i
        instances[file_name].append(Instance(box=clipped, category_id=cat_id, raw_name=raw))

    for f in defect_files:
        if not instances[f] and not isinstance(sizes[f], str):
            log.warn(
                Problem(
                    "unannotated-defect-image",
                    root / f,
                    "",
                    f"image is in {DEFECT_DIR}/ but has no record in {ANNOTATION_FILE}; "
                    "it is kept as a defect-free image",
                    f"annotate it or move it to {NORMAL_DIR}/",
                )
            )

    split_of = _read_splits(root, set(all_files), by_name, log)
    images = [
        ImageRecord(
            image_id=k + 1,
            file_name=f,
            width=sizes[f][0],
            height=sizes[f][1],
            instances=instances[f],
            split=split_of.get(f),
        )
        for k, f in enumerate(f for f in all_files if not isinstance(sizes[f], str))
    ]
    report = log.finish()
    return DetectionDataset(root, TIANCHI_CATEGORIES, images), report


def _parse_record(
    rec: object, root: Path, by_name: dict[str, str]
) -> tuple[str, str, int, tuple[float, float, float, float]]:
    """``(file_name, raw_name, category_id, box)`` of one JSON record (box not yet checked)."""
    if not isinstance(rec, dict):
        raise RecordError(
            "malformed-record",
            f"expected an object, got {type(rec).__name__}",
            'write {"name": ..., "defect_name": ..., "bbox": [x1, y1, x2, y2]}',
        )
    missing = [k for k in ("name", "defect_name", "bbox") if k not in rec]
    if missing or not isinstance(rec["name"], str) or not isinstance(rec["defect_name"], str):
        raise RecordError(
            "malformed-record",
            f"missing or non-string keys {missing or ['name', 'defect_name']}",
            'every record needs "name" (string), "defect_name" (string) and "bbox" (4 numbers)',
        )
    name = rec["name"].strip()
    file_name = by_name.get(name)
    if file_name is None and (root / name).is_file():  # a name given with its folder
        file_name = name
    if file_name is None:
        raise RecordError(
            "missing-image",
            f"image {name!r} not found in {DEFECT_DIR}/ or {NORMAL_DIR}/",
            f"add the image to {DEFECT_DIR}/, or remove its records, {LENIENT_HINT}",
        )
    raw = normalise_raw_name(rec["defect_name"])
    cat_id = TIANCHI_RAW_TO_ID.get(raw)
    if cat_id is None:
        raise RecordError(
            "unknown-name",
            f"unknown defect name {rec['defect_name']!r}",
            f"use one of the 34 Tianchi names: {_KNOWN_NAMES}",
        )
    return file_name, raw, cat_id, as_four_numbers(rec["bbox"])


def _read_splits(
    root: Path, files: set[str], by_name: dict[str, str], log: ProblemLog
) -> dict[str, str]:
    """file name -> split from ``Annotations/splits.json`` (empty when there is none)."""
    path = root / SPLITS_FILE
    if not path.is_file():
        return {}
    data = read_json(path, "splits file")
    if not isinstance(data, dict):
        raise fatal(
            "malformed-json",
            path,
            "expected an object {split: [file names]}",
            'write {"train": [...], "val": [...], "test": [...]}',
        )
    out: dict[str, str] = {}
    for key, names in data.items():
        split = normalise_split(str(key))
        if split is None or not isinstance(names, list):
            log.skip(
                Problem(
                    "malformed-record",
                    path,
                    f"key {key!r}",
                    "expected a split name (train, val, test) holding a list of file names",
                    "rename the key or fix its value",
                )
            )
            continue
        for j, name in enumerate(names):
            where = f"{key}[{j}] {name!r}"
            file_name = name if name in files else by_name.get(str(name).strip())
            if file_name is None:
                log.skip(
                    Problem(
                        "missing-image",
                        path,
                        where,
                        "names an image that is not in the dataset",
                        "remove the name or add the image",
                    )
                )
            elif out.setdefault(file_name, split) != split:
                log.skip(
                    Problem(
                        "duplicate",
                        path,
                        where,
                        f"image is also in split {out[file_name]!r}",
                        "list each image in one split only",
                    )
                )
    return out


# ----------------------------------------------------------------------------- writing


def _tianchi_id(cat: Category) -> int | None:
    """The Tianchi category id a category stands for (by raw name, else by English name)."""
    for raw in cat.raw_names:
        if raw in TIANCHI_RAW_TO_ID:
            return TIANCHI_RAW_TO_ID[raw]
    for tc in TIANCHI_CATEGORIES:
        if tc.name == cat.name:
            return tc.id
    return None


def tianchi_records(dataset: DetectionDataset) -> list[dict[str, object]]:
    """The ``anno_train.json`` records of a dataset (crowd regions are not expressible).

    Raises:
        InvalidDataError: a category with no Tianchi name, two images with one JSON name,
            or a non-finite box.
    """
    problems: list[Problem] = []
    canonical = {tc.id: tc.raw_names[0] for tc in TIANCHI_CATEGORIES}
    tianchi_id = {c.id: _tianchi_id(c) for c in dataset.categories}
    owner: dict[str, str] = {}
    records: list[dict[str, object]] = []
    where = dataset.root
    for rec in dataset.images:
        if not rec.instances:
            continue
        name = tianchi_image_name(rec.file_name)
        if owner.setdefault(name, rec.file_name) != rec.file_name:
            problems.append(
                Problem(
                    "duplicate",
                    where,
                    f"image {rec.file_name!r}",
                    f"has the same Tianchi name {name!r} as {owner[name]!r}",
                    "give the images distinct base names (fabricdet convert renames them)",
                )
            )
            continue
        for k, inst in enumerate(rec.instances):
            tid = tianchi_id.get(inst.category_id)
            if tid is None:
                known = ", ".join(c.name for c in TIANCHI_CATEGORIES)
                problems.append(
                    Problem(
                        "unknown-category",
                        where,
                        f"image {rec.file_name!r} instance [{k}]",
                        f"category id {inst.category_id} has no Tianchi defect name",
                        f"give the category a Tianchi raw name or one of the names: {known}",
                    )
                )
                continue
            raw = inst.raw_name
            if raw is None or TIANCHI_RAW_TO_ID.get(normalise_raw_name(raw)) != tid:
                raw = canonical[tid]
            box = [round(float(v), 4) for v in inst.box]
            if not all(abs(v) < float("inf") for v in box) or box[2] <= box[0] or box[3] <= box[1]:
                problems.append(
                    Problem(
                        "bad-box",
                        where,
                        f"image {rec.file_name!r} instance [{k}]",
                        f"box {box} is not finite with x2 > x1 and y2 > y1",
                        "fix the box before writing",
                    )
                )
                continue
            records.append({"name": name, "defect_name": normalise_raw_name(raw), "bbox": box})
    if problems:
        raise InvalidDataError(problems)
    return records


def write_tianchi(dataset: DetectionDataset, out_dir: Path) -> None:
    """Write the Tianchi annotation files of ``dataset`` into ``out_dir``.

    Writes ``Annotations/anno_train.json`` (names \\uXXXX-escaped like the official file,
    ``Instance.raw_name`` when it belongs to the instance's category, else the category's
    first raw name) and, when any image has a split, ``Annotations/splits.json``. Images are
    not copied: ``fabricdet convert`` lays them out. Each file is written atomically and
    nothing is written when validation fails. The dataset is not modified.

    Raises:
        InvalidDataError: see :func:`tianchi_records`.
    """
    out_dir = Path(out_dir)
    records = tianchi_records(dataset)  # validates everything before the first write
    splits = splits_dict(dataset)
    atomic_write_text(out_dir / ANNOTATION_FILE, json_lines_list(records, ensure_ascii=True))
    split_path = out_dir / SPLITS_FILE
    if any(splits.values()):
        atomic_write_json(split_path, splits, ensure_ascii=True)
    else:
        # A splits file left from an earlier write would now describe the wrong images.
        with contextlib.suppress(FileNotFoundError):
            split_path.unlink()
