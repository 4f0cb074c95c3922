"""Write the general detection set as a COCO dataset that :func:`load_dataset` reads::

    OUT/images/000000.jpg ...     the scenes (RGB JPEG)
    OUT/annotations.json          COCO instances: RLE masks, ``images[*].split``

Images are written first and the annotation file last, atomically, by the project's COCO
writer: a folder holding ``annotations.json`` is always complete. Same seed, size and config:
same bytes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats import write_coco
from fabricdet.data.formats.detect import COCO_IN_FOLDER
from fabricdet.data.general.config import DEFAULT_SIZE, GeneralConfig, GeneralSynthError
from fabricdet.data.general.objects import GENERAL_CATEGORIES
from fabricdet.data.general.scene import render_scene
from fabricdet.data.synth.camera import encode_jpeg

IMAGES_DIR = "images"
SPLITS: tuple[str, str, str] = ("train", "val", "test")


def split_names(num_images: int, seed: int, proportions: tuple[float, float, float]) -> list[str]:
    """The split of each image: exact counts (rounded), images drawn at random for each."""
    total = sum(proportions)
    n_val = round(num_images * proportions[1] / total)
    n_test = round(num_images * proportions[2] / total)
    names = np.array(["train"] * num_images, dtype=object)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 3])).permutation(num_images)
    names[order[:n_val]] = "val"
    names[order[n_val : n_val + n_test]] = "test"
    return [str(n) for n in names]


def _check(out: Path, num_images: int, size: tuple[int, int], overwrite: bool) -> None:
    if num_images < 1:
        raise GeneralSynthError(f"num_images {num_images}: need at least 1 image")
    if min(size) < 32:
        raise GeneralSynthError(f"size {size[0]}x{size[1]}: both sides must be at least 32 px")
    if (out / COCO_IN_FOLDER).exists() and not overwrite:
        raise GeneralSynthError(
            f"{out / COCO_IN_FOLDER} exists: {out} already holds a dataset; choose another "
            "folder or pass --overwrite"
        )


def generate_general(
    out: Path | str,
    num_images: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    config: GeneralConfig | None = None,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    overwrite: bool = False,
    progress: bool = False,
) -> DetectionDataset:
    """Render ``num_images`` scenes into ``out`` and write their COCO annotations.

    Args:
        size: ``(width, height)`` in pixels.
        splits: train/val/test proportions.
        overwrite: replace the dataset already in ``out`` (its ``images/`` and annotation).

    Returns:
        The dataset as written (what ``load_dataset(out)`` reads back).

    Raises:
        GeneralSynthError: fewer than one image, a side under 32 px, or ``out`` already holds
            a dataset and ``overwrite`` is false.
    """
    out = Path(out)
    cfg = config or GeneralConfig()
    _check(out, num_images, size, overwrite)
    if overwrite:
        # Annotation first: a half-removed folder must not look like a complete dataset.
        (out / COCO_IN_FOLDER).unlink(missing_ok=True)
        shutil.rmtree(out / IMAGES_DIR, ignore_errors=True)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    names = split_names(num_images, seed, splits)
    digits = max(6, len(str(num_images - 1)))
    records: list[ImageRecord] = []
    bar = tqdm(
        range(num_images), desc="general set", unit="img", disable=not progress, file=sys.stderr
    )
    for index in bar:
        image, instances = render_scene(seed, index, size, cfg)
        # A stream of its own, so that changing the quality range leaves the pixels alone.
        q_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 11]))
        quality = int(q_rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        file_name = f"{IMAGES_DIR}/{index:0{digits}d}.jpg"
        data = encode_jpeg(image, quality)
        (out / file_name).write_bytes(data)
        records.append(
            ImageRecord(index, file_name, size[0], size[1], instances, split=names[index])
        )
    dataset = DetectionDataset(out, GENERAL_CATEGORIES, records)
    write_coco(dataset, out / COCO_IN_FOLDER)
    return dataset
