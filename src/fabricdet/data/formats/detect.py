"""Format detection and the one entry point that reads any supported dataset."""

from __future__ import annotations

import logging
from pathlib import Path

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.coco import read_coco
from fabricdet.data.formats.problems import LoadReport, fatal
from fabricdet.data.formats.tianchi import ANNOTATION_FILE, DEFECT_DIR, NORMAL_DIR, read_tianchi
from fabricdet.data.formats.yolo import IMAGES_DIR, read_yolo

FORMATS: tuple[str, ...] = ("tianchi", "coco", "yolo")

#: the COCO file looked for inside a folder (what ``fabricdet convert --to coco`` writes).
COCO_IN_FOLDER = "annotations.json"

_LOOKED_FOR = (
    f"a Tianchi folder ({ANNOTATION_FILE}, {DEFECT_DIR}/, {NORMAL_DIR}/), "
    f"a COCO JSON file (*.json, or {COCO_IN_FOLDER} inside a folder), "
    f"a YOLO folder ({IMAGES_DIR}/ with labels/)"
)

log = logging.getLogger(__name__)


def detect_format(path: Path) -> tuple[str, Path]:
    """``(format, location)`` of a dataset path; the location is what the reader takes.

    A ``.json`` file is COCO, except ``Annotations/anno_train.json`` which stands for its
    Tianchi folder. A folder is, in this order: Tianchi if it holds
    ``Annotations/anno_train.json``; COCO if it holds ``annotations.json``; Tianchi if it
    holds ``defect_Images/`` or ``normal_Images/``; YOLO if it holds ``images/``.

    Raises:
        InvalidDataError: the path does not exist or matches no format.
    """
    path = Path(path)
    if path.is_file():
        if path.name == Path(ANNOTATION_FILE).name and path.parent.name == "Annotations":
            return "tianchi", path.parent.parent
        if path.suffix.lower() == ".json":
            return "coco", path
    elif path.is_dir():
        # A folder may hold both a Tianchi annotation and a COCO file (the synthetic data
        # does): the Tianchi layout wins; point at the .json file to read the COCO one.
        if (path / ANNOTATION_FILE).is_file():
            return "tianchi", path
        if (path / COCO_IN_FOLDER).is_file():
            return "coco", path / COCO_IN_FOLDER
        if any((path / d).is_dir() for d in (DEFECT_DIR, NORMAL_DIR)):
            return "tianchi", path  # the reader says what is missing
        if (path / IMAGES_DIR).is_dir():
            return "yolo", path
    else:
        raise fatal("missing-file", path, "no such file or folder", "check the path")
    raise fatal(
        "unknown-format",
        path,
        "cannot tell the dataset format",
        f"point at one of: {_LOOKED_FOR}",
    )


def load_dataset_with_report(
    path: Path,
    *,
    strict: bool = True,
    image_root: Path | None = None,
    fmt: str | None = None,
    check_images: bool = True,
) -> tuple[DetectionDataset, LoadReport]:
    """Read a dataset of any supported format, returning what a lenient read skipped.

    Args:
        path: a Tianchi folder, a COCO JSON file (or a folder holding ``annotations.json``),
            or a YOLO folder.
        strict: raise one error listing every bad record (True), or skip bad records and
            list them in the report (False).
        image_root: COCO only: the folder ``file_name`` is relative to.
        fmt: ``"tianchi"``, ``"coco"`` or ``"yolo"`` to skip detection.
        check_images: COCO only: ``False`` trusts the JSON's image sizes and opens no image
            (Tianchi and YOLO files hold no sizes, so their images are always read).

    Raises:
        InvalidDataError: see the readers; also an unknown format.
    """
    if fmt is None:
        fmt, where = detect_format(path)
    elif fmt in FORMATS:
        where = Path(path)
        if fmt == "coco" and where.is_dir():
            where = where / COCO_IN_FOLDER
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt == "tianchi":
        return read_tianchi(where, strict=strict)
    if fmt == "coco":
        return read_coco(where, strict=strict, image_root=image_root, check_images=check_images)
    return read_yolo(where, strict=strict)


def load_dataset(
    path: Path,
    *,
    strict: bool = True,
    image_root: Path | None = None,
    fmt: str | None = None,
) -> DetectionDataset:
    """Read a dataset of any supported format (see :func:`load_dataset_with_report`).

    In lenient mode the skipped records are logged as one warning (logger
    ``fabricdet.data.formats.detect``); call :func:`load_dataset_with_report` to get them.
    """
    dataset, report = load_dataset_with_report(path, strict=strict, image_root=image_root, fmt=fmt)
    if report.skipped:
        log.warning("%s: %s", path, report.format())
    return dataset
