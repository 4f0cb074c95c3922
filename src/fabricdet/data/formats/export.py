"""Writing a complete dataset folder (images and annotations) in any supported format.

The folder is built under a temporary name beside the destination and renamed into place at
the end, so the destination either does not exist or is complete. Images are hard-linked when
source and destination share a file system (instant, no extra space; the source is never
written to), else copied.

Layouts written:
- tianchi: ``defect_Images/`` (images with instances), ``normal_Images/`` (the others),
  ``Annotations/anno_train.json`` (+ ``splits.json``);
- coco: ``annotations.json`` with the images at their original relative paths;
- yolo: ``images/[split/]``, ``labels/[split/]``, ``data.yaml``.
Tianchi and YOLO folders are flat, so images are renamed to their base name, or to their
whole relative path with ``/`` -> ``__`` where base names would collide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path, PurePosixPath

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.coco_write import write_coco
from fabricdet.data.formats.crowd import crowd_of
from fabricdet.data.formats.detect import COCO_IN_FOLDER, FORMATS
from fabricdet.data.formats.problems import fatal
from fabricdet.data.formats.tianchi import DEFECT_DIR, NORMAL_DIR, write_tianchi
from fabricdet.data.formats.yolo import IMAGES_DIR, write_yolo


def flat_names(file_names: list[str]) -> list[str]:
    """Collision-free flat names: the base name, or the path joined with ``__`` if shared."""
    base = [PurePosixPath(f).name for f in file_names]
    counts = Counter(base)
    return [
        b if counts[b] == 1 else "__".join(PurePosixPath(f).parts)
        for f, b in zip(file_names, base, strict=True)
    ]


def _safe_relative(file_name: str) -> bool:
    p = PurePosixPath(file_name)
    return not p.is_absolute() and ".." not in p.parts


def target_file_names(dataset: DetectionDataset, fmt: str) -> list[str]:
    """The file name each image gets in a ``fmt`` folder, in ``dataset.images`` order."""
    names = [r.file_name for r in dataset.images]
    flat = flat_names(names)
    if fmt == "coco":
        return [
            n if _safe_relative(n) else f"{IMAGES_DIR}/{f}"
            for n, f in zip(names, flat, strict=True)
        ]
    if fmt == "tianchi":
        return [
            f"{DEFECT_DIR if r.instances else NORMAL_DIR}/{f}"
            for r, f in zip(dataset.images, flat, strict=True)
        ]
    if fmt == "yolo":
        return [
            f"{IMAGES_DIR}/{r.split}/{f}" if r.split else f"{IMAGES_DIR}/{f}"
            for r, f in zip(dataset.images, flat, strict=True)
        ]
    raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def information_lost(dataset: DetectionDataset, fmt: str) -> list[str]:
    """What a ``fmt`` folder cannot hold of this dataset (one sentence each)."""
    notes = []
    n_crowd = sum(len(crowd_of(r)) for r in dataset.images)
    n_masks = sum(i.mask is not None for r in dataset.images for i in r.instances)
    if n_crowd and fmt != "coco":
        notes.append(f"{n_crowd} crowd region(s) are not expressible in {fmt} and are left out")
    if n_masks and fmt != "coco":
        notes.append(f"{n_masks} mask(s) are not written in {fmt} (boxes only)")
    return notes


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    shutil.copy2(src, dst)


def export_dataset(
    dataset: DetectionDataset, dst: Path, fmt: str, *, link: bool = True
) -> DetectionDataset:
    """Write ``dataset`` as a complete ``fmt`` folder at ``dst`` and return it read from there.

    Args:
        dataset: the source; not modified.
        dst: the folder to create; must not exist, or be empty.
        fmt: ``"tianchi"``, ``"coco"`` or ``"yolo"``.
        link: hard-link images when possible (else copy).

    Returns:
        the dataset as it now lies in ``dst`` (new records with the new file names).

    Raises:
        InvalidDataError: ``dst`` exists and is not empty, an image is missing, or the
            dataset cannot be expressed in ``fmt`` (e.g. categories without Tianchi names).
    """
    dst = Path(dst)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise fatal(
            "exists",
            dst,
            "destination exists and is not empty",
            "choose a new folder or remove the old one",
        )
    names = target_file_names(dataset, fmt)
    images = [
        replace(r, file_name=n, instances=list(r.instances))
        for r, n in zip(dataset.images, names, strict=True)
    ]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        built = DetectionDataset(tmp, dataset.categories, images)
        for old, new in zip(dataset.images, images, strict=True):
            src = dataset.image_path(old)
            if not src.is_file():
                raise fatal(
                    "missing-image",
                    src,
                    "image not found",
                    "restore the image or remove it from the dataset",
                    record=f"image {old.file_name!r}",
                )
            _place(src, tmp / new.file_name, link)
        if fmt == "tianchi":
            write_tianchi(built, tmp)
        elif fmt == "coco":
            write_coco(built, tmp / COCO_IN_FOLDER)
        else:
            write_yolo(built, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if dst.exists():
            dst.rmdir()
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DetectionDataset(dst, dataset.categories, images)
