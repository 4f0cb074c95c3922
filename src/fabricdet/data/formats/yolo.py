"""The YOLO txt layout.

::

    root/
      images/[train|val|test/]<name>.jpg
      labels/[train|val|test/]<name>.txt   one "class cx cy w h" line per object, normalised
      data.yaml                            optional: names (list or {index: name})

Reading:
- every image under ``images/`` (recursively) is an image; its label file is the same path
  under ``labels/`` with ``.txt``; an empty or missing label file means a defect-free image;
- a first folder named train/val/valid/test under ``images/`` sets the split;
- lines with more than 5 fields are Ultralytics segmentation polygons
  (``class x1 y1 x2 y2 ...``): the box is the polygon's bounds, the polygon becomes the mask;
- class names come from, in order: ``data.yaml`` or ``dataset.yaml`` (key ``names``),
  ``classes.txt``, ``obj.names`` (one name per line); else ``class_<i>``. fabricdet's own
  ``data.yaml`` also keeps ``category_ids`` and ``raw_names`` so categories survive a round trip.
  Without ``category_ids`` the category id is the class index.

Writing: one label file per image (empty for defect-free images), 6-decimal coordinates
(under 0.003 px of error on a 2446 px image), masks and crowd regions left out.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.atomic import atomic_write_text
from fabricdet.data.formats.box_checks import BOX_TOLERANCE_PX, check_box
from fabricdet.data.formats.image_size import is_image_file, read_image_sizes
from fabricdet.data.formats.problems import (
    LENIENT_HINT,
    InvalidDataError,
    LoadReport,
    Problem,
    ProblemLog,
    RecordError,
    fatal,
)
from fabricdet.data.formats.rle import segmentation_to_rle
from fabricdet.data.formats.splits import SPLITS, normalise_split

IMAGES_DIR = "images"
LABELS_DIR = "labels"
YAML_NAMES = ("data.yaml", "dataset.yaml")
LIST_NAMES = ("classes.txt", "obj.names")


def label_path(root: Path, file_name: str) -> Path:
    """Label file of an image file name ``images/<rel>`` -> ``root/labels/<rel>.txt``."""
    rel = PurePosixPath(file_name).relative_to(IMAGES_DIR)
    return root / LABELS_DIR / rel.with_suffix(".txt")


def _read_names(root: Path) -> tuple[list[str] | None, list[int] | None, list[list[str]] | None]:
    """``(names, category_ids, raw_names)`` from the first names file found (or Nones)."""
    for fname in YAML_NAMES:
        path = root / fname
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise fatal(
                "malformed-yaml", path, f"malformed YAML: {err}", "repair the file"
            ) from None
        if not isinstance(data, dict) or "names" not in data:
            continue
        names = data["names"]
        if isinstance(names, dict):  # Ultralytics writes {0: name, 1: name}
            try:
                names = [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise fatal(
                    "malformed-yaml", path, "names keys must be class indices", "fix names"
                ) from None
        if not isinstance(names, list):
            raise fatal("malformed-yaml", path, "names must be a list or a dict", "fix names")
        names = [str(n) for n in names]
        ids = data.get("category_ids")
        raws = data.get("raw_names")
        ok_ids = isinstance(ids, list) and len(ids) == len(names) and len(set(ids)) == len(ids)
        ok_raws = isinstance(raws, list) and len(raws) == len(names)
        return (
            names,
            [int(i) for i in ids] if ok_ids else None,
            [[str(r) for r in rs] for rs in raws] if ok_raws else None,
        )
    for fname in LIST_NAMES:
        path = root / fname
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip()], None, None
    return None, None, None


def _parse_line(
    line: str, width: int, height: int, num_classes: int | None
) -> tuple[int, Instance]:
    """``(class index, instance)`` of one label line."""
    fields = line.split()
    n = len(fields)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise RecordError(
            "malformed-record",
            f"expected 'class cx cy w h' (5 fields) or a polygon, got {n} fields",
            "write one object per line as 'class cx cy w h' with normalised coordinates",
        )
    try:
        cls = int(fields[0])
        vals = [float(v) for v in fields[1:]]
    except ValueError:
        raise RecordError(
            "malformed-record",
            f"non-numeric field in {line.strip()!r}",
            "write an integer class and numeric coordinates",
        ) from None
    if cls < 0 or (num_classes is not None and cls >= num_classes):
        raise RecordError(
            "unknown-category",
            f"class {cls} is not among the {num_classes} names",
            f"use a class index in 0..{(num_classes or 1) - 1} or add the name",
        )
    if not all(math.isfinite(v) for v in vals):
        raise RecordError("non-finite", "NaN or infinite coordinate", "fix the line")
    mask = None
    if n == 5:
        cx, cy, w, h = vals
        box = (
            (cx - w / 2) * width,
            (cy - h / 2) * height,
            (cx + w / 2) * width,
            (cy + h / 2) * height,
        )
    else:
        xs, ys = vals[0::2], vals[1::2]
        box = (min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height)
        poly = [v * (width if k % 2 == 0 else height) for k, v in enumerate(vals)]
        mask = segmentation_to_rle([poly], height, width)
    return cls, Instance(
        box=check_box(box, width, height, BOX_TOLERANCE_PX), category_id=cls, mask=mask
    )


def read_yolo(root: Path, *, strict: bool = True) -> tuple[DetectionDataset, LoadReport]:
    """Read a YOLO folder (see the module docstring for the conventions).

    Image ids are 1..N in sorted file-name order; sizes come from the image headers.

    Raises:
        InvalidDataError: (strict) every bad line, listed; (both modes) no ``images/`` folder.
    """
    root = Path(root)
    img_dir = root / IMAGES_DIR
    if not img_dir.is_dir():
        raise fatal(
            "missing-file",
            img_dir,
            "folder not found",
            "a YOLO dataset folder holds images/ and labels/",
        )
    log = ProblemLog(strict)
    names, cat_ids, raw_names = _read_names(root)
    files = sorted(
        p.relative_to(root).as_posix()
        for p in img_dir.rglob("*")
        if p.is_file() and is_image_file(p)
    )
    sizes = read_image_sizes([root / f for f in files])
    parsed: list[tuple[str, tuple[int, int], list[tuple[int, Instance]]]] = []
    max_cls = -1
    for f, size in zip(files, sizes, strict=True):
        if isinstance(size, str):
            log.skip(
                Problem(
                    "unreadable-image",
                    root / f,
                    "",
                    size,
                    f"replace the image with a readable copy, {LENIENT_HINT}",
                )
            )
            continue
        objs: list[tuple[int, Instance]] = []
        lp = label_path(root, f)
        if lp.is_file():
            for k, line in enumerate(lp.read_text(encoding="utf-8").splitlines()):
                if not line.strip():
                    continue
                try:
                    objs.append(
                        _parse_line(
                            line, size[0], size[1], len(names) if names is not None else None
                        )
                    )
                except RecordError as err:
                    log.skip(err.at(lp, f"line {k + 1}"))
                    continue
                max_cls = max(max_cls, objs[-1][0])
        parsed.append((f, size, objs))

    image_stems = {label_path(root, f) for f in files}
    labels_dir = root / LABELS_DIR
    orphans = (
        sorted(p for p in labels_dir.rglob("*.txt") if p not in image_stems)
        if labels_dir.is_dir()
        else []
    )
    for p in orphans:
        log.skip(
            Problem(
                "missing-image",
                p,
                "",
                "label file has no image under images/",
                f"add the image or delete the label file, {LENIENT_HINT}",
            )
        )

    if names is None:
        names = [f"class_{i}" for i in range(max_cls + 1)]
    ids = cat_ids if cat_ids is not None else list(range(len(names)))
    raws = raw_names if raw_names is not None else [[] for _ in names]
    categories = tuple(Category(ids[i], names[i], tuple(raws[i])) for i in range(len(names)))

    images = []
    for k, (f, size, objs) in enumerate(parsed):
        insts = [Instance(box=inst.box, category_id=ids[cls], mask=inst.mask) for cls, inst in objs]
        parts = PurePosixPath(f).parts
        split = normalise_split(parts[1]) if len(parts) > 2 else None
        images.append(ImageRecord(k + 1, f, size[0], size[1], insts, split))
    report = log.finish()
    return DetectionDataset(root, categories, images), report


def yolo_lines(record: ImageRecord, label_of: dict[int, int]) -> str:
    """Label file text of one image (empty for a defect-free image)."""
    lines = []
    w, h = float(record.width), float(record.height)
    for inst in record.instances:
        x1, y1, x2, y2 = (float(v) for v in inst.box)
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{label_of[inst.category_id]} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
    return "".join(lines)


def data_yaml(dataset: DetectionDataset) -> dict[str, Any]:
    """The ``data.yaml`` of a dataset (Ultralytics keys plus fabricdet's category map)."""
    present = {r.split for r in dataset.images if r.split is not None}
    out: dict[str, Any] = {"path": "."}
    for split in SPLITS:
        if split in present:
            out[split] = f"{IMAGES_DIR}/{split}"
    if not present:
        out["train"] = out["val"] = IMAGES_DIR
    out["nc"] = dataset.num_classes
    out["names"] = [c.name for c in dataset.categories]
    out["category_ids"] = [int(c.id) for c in dataset.categories]
    out["raw_names"] = [list(c.raw_names) for c in dataset.categories]
    return out


def write_yolo(dataset: DetectionDataset, out_dir: Path) -> None:
    """Write the YOLO label files and ``data.yaml`` of ``dataset`` into ``out_dir``.

    Every ``file_name`` must lie under ``images/`` (``fabricdet convert`` lays the images out
    that way). Each file is written atomically; nothing is written when validation fails.

    Raises:
        InvalidDataError: a file name outside ``images/``, or an unknown category id.
    """
    out_dir = Path(out_dir)
    label_of = {c.id: k for k, c in enumerate(dataset.categories)}
    problems: list[Problem] = []
    texts: dict[Path, str] = {}
    for rec in dataset.images:
        where = f"image {rec.file_name!r}"
        if PurePosixPath(rec.file_name).parts[:1] != (IMAGES_DIR,):
            problems.append(
                Problem(
                    "bad-layout",
                    dataset.root,
                    where,
                    "YOLO images must lie under images/",
                    "convert with `fabricdet convert --to yolo`",
                )
            )
            continue
        unknown = [i.category_id for i in rec.instances if i.category_id not in label_of]
        if unknown:
            problems.append(
                Problem(
                    "unknown-category",
                    dataset.root,
                    where,
                    f"unknown category ids {unknown}",
                    "add the categories to the dataset",
                )
            )
            continue
        texts[label_path(out_dir, rec.file_name)] = yolo_lines(rec, label_of)
    if problems:
        raise InvalidDataError(problems)
    for path, text in texts.items():
        atomic_write_text(path, text, fsync=False)
    atomic_write_text(
        out_dir / YAML_NAMES[0],
        yaml.safe_dump(data_yaml(dataset), allow_unicode=True, sort_keys=False),
    )
