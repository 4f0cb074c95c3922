"""Write a synthetic dataset in the Tianchi layout, plus COCO files with exact RLE masks.

::

    OUT/defect_Images/000001.jpg ...      images with at least one defect
    OUT/normal_Images/000000.jpg ...      defect-free images
    OUT/Annotations/anno_train.json       Tianchi records of every defect box (all splits)
    OUT/Annotations/splits.json           {"train": [...], "val": [...], "test": [...]}
    OUT/Annotations/instances_{train,val,test}.json   COCO, RLE masks, file_name relative to OUT

Boxes are xyxy floats in pixel-edge coordinates, the tight box of the instance's exact mask: a
mask spanning columns ``c0..c1`` and rows ``r0..r1`` has the box ``[c0, r0, c1 + 1, r1 + 1]``.

Images are rendered in parallel worker processes, each writing its own JPEG; the annotation
files are written last, atomically, so a folder with annotation files is always complete.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats import load_dataset, write_coco, write_tianchi
from fabricdet.data.formats.coco import read_coco
from fabricdet.data.synth.camera import encode_jpeg
from fabricdet.data.synth.config import SynthConfig, SynthError
from fabricdet.data.synth.scene import render_sample

DEFECT_DIR = "defect_Images"
NORMAL_DIR = "normal_Images"
ANNOTATION_DIR = "Annotations"
DEFAULT_SIZE = (2446, 1000)
#: The folders and files :func:`generate_dataset` owns in its output folder.
_OWNED = (DEFECT_DIR, NORMAL_DIR, ANNOTATION_DIR)


def _jpeg_quality(seed: int, index: int, config: SynthConfig) -> int:
    # A stream of its own, so that changing the quality range leaves the pixels alone.
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    return int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))


def _render_one(
    index: int, out_dir: str, seed: int, size: tuple[int, int], config: SynthConfig, digits: int
) -> tuple[int, str, list[Instance]]:
    """Render image ``index``, write its JPEG, return ``(index, file_name, instances)``."""
    image, instances = render_sample(seed, index, size, config)
    folder = DEFECT_DIR if instances else NORMAL_DIR
    file_name = f"{folder}/{index:0{digits}d}.jpg"
    data = encode_jpeg(image, _jpeg_quality(seed, index, config))
    with open(os.path.join(out_dir, file_name), "wb") as f:
        f.write(data)
    return index, file_name, instances


def _worker_init() -> None:
    # One process per core already; OpenCV's own threads would only fight over the cores.
    cv2.setNumThreads(1)


def _split_names(
    records: Sequence[ImageRecord], fractions: tuple[float, float, float], seed: int
) -> None:
    """Assign train/val/test in place: exact proportions, stratified by defective/normal,
    deterministic in ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
    total = sum(fractions)
    for group in (
        [r for r in records if r.instances],
        [r for r in records if not r.instances],
    ):
        order = rng.permutation(len(group))
        n_train = round(len(group) * fractions[0] / total)
        n_val = round(len(group) * fractions[1] / total)
        for rank, k in enumerate(order):
            group[k].split = (
                "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            )


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"{out_dir} exists and is not a folder; choose another output folder")
    existing = [name for name in _OWNED if (out_dir / name).exists()]
    if existing and not overwrite:
        raise SynthError(
            f"{out_dir} already holds a dataset ({', '.join(existing)}); choose an empty "
            "folder or pass --overwrite to replace it"
        )
    for name in existing:
        shutil.rmtree(out_dir / name)
    for name in (DEFECT_DIR, NORMAL_DIR, ANNOTATION_DIR):
        (out_dir / name).mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out_dir: Path | str,
    num_images: int,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    config: SynthConfig | None = None,
    workers: int | None = None,
    *,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    overwrite: bool = False,
    progress: bool = True,
) -> DetectionDataset:
    """Render ``num_images`` images into ``out_dir`` (see the module docstring for the layout).

    Args:
        out_dir: output folder; created if needed, must not already hold a dataset unless
            ``overwrite``.
        num_images: number of images (>= 1).
        seed: dataset seed; image ``k`` depends only on ``(seed, k)`` and ``size``, so the files
            are byte-identical for any ``workers``.
        size: image ``(width, height)``, Tianchi's 2446x1000 by default.
        config: statistics; default :class:`SynthConfig`.
        workers: processes; default ``os.cpu_count()``; 1 renders in this process.
        splits: train/val/test proportions.
        overwrite: replace the dataset folders of an earlier run.
        progress: show a progress bar on stderr.

    Returns:
        the dataset, rooted at ``out_dir``, with splits, RLE masks and raw names.
    """
    config = config or SynthConfig()
    config.validate()
    if num_images < 1:
        raise SynthError(f"num_images must be at least 1, got {num_images}")
    if size[0] < 32 or size[1] < 32:
        raise SynthError(f"image size {size[0]}x{size[1]} is too small; use at least 32x32")
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise SynthError(f"splits must be 3 proportions >= 0 (train, val, test), got {splits}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise SynthError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)

    digits = max(6, len(str(num_images - 1)))
    job = partial(
        _render_one, out_dir=str(out_dir), seed=seed, size=tuple(size), config=config, digits=digits
    )
    results: dict[int, tuple[str, list[Instance]]] = {}
    bar = tqdm(
        total=num_images,
        desc="synth",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
    )
    with bar:
        if workers == 1 or num_images == 1:
            for index in range(num_images):
                _, name, inst = job(index)
                results[index] = (name, inst)
                bar.update()
        else:
            # forkserver: workers start from a clean process (forking a parent that holds
            # threads, e.g. torch's, can deadlock) yet start fast.
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            chunk = max(1, min(8, num_images // (workers * 8)))
            with ctx.Pool(min(workers, num_images), initializer=_worker_init) as pool:
                for index, name, inst in pool.imap_unordered(job, range(num_images), chunk):
                    results[index] = (name, inst)
                    bar.update()

    # Ids are 1-based in name order, the numbering the Tianchi reader gives the same folder,
    # so predictions made from the COCO files score against the Tianchi layout too.
    records = [
        ImageRecord(index + 1, results[index][0], size[0], size[1], results[index][1])
        for index in range(num_images)
    ]
    _split_names(records, splits, seed)
    dataset = DetectionDataset(out_dir, TIANCHI_CATEGORIES, records)
    annotations = out_dir / ANNOTATION_DIR
    for split in ("train", "val", "test"):
        write_coco(dataset.subset(split), annotations / f"instances_{split}.json")
    write_tianchi(dataset, out_dir)  # anno_train.json and splits.json
    return dataset


def load_or_generate(
    out_dir: Path | str,
    num_images: int,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    *,
    config: SynthConfig | None = None,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    progress: bool = True,
) -> DetectionDataset:
    """The synthetic dataset in ``out_dir``, rendered there first (:func:`generate_dataset`,
    with ``config`` and ``splits``) unless an earlier run already wrote it: how the demo and
    the benchmarks resume. Either way the instances carry their exact masks.

    Raises:
        SynthError: the folder holds another number of images or another frame size than
            asked for (training on it would quietly be another benchmark).
    """
    out_dir = Path(out_dir)
    if not (out_dir / ANNOTATION_DIR / "anno_train.json").is_file():
        return generate_dataset(
            out_dir, num_images, seed, size, config, splits=splits, progress=progress
        )
    dataset = load_dataset(out_dir)
    sizes = sorted({(r.width, r.height) for r in dataset.images})
    if len(dataset.images) != num_images or sizes != [tuple(size)]:
        held = ", ".join(f"{w}x{h}" for w, h in sizes)
        raise SynthError(
            f"{out_dir} holds {len(dataset.images)} images of {held}, not the "
            f"{num_images} of {size[0]}x{size[1]} asked for: use another folder, or delete "
            "this one to render it again"
        )
    return _with_masks(dataset, out_dir / ANNOTATION_DIR)


def _with_masks(dataset: DetectionDataset, annotations: Path) -> DetectionDataset:
    """``dataset`` (read from the Tianchi layout, which holds boxes only) with each instance's
    mask from the COCO split files written beside it, in place.

    Raises:
        SynthError: a COCO file's images or boxes disagree with the Tianchi records (the
            folder was edited): render it again into an empty folder.
    """
    by_name = {r.file_name: r for r in dataset.images}
    for split in ("train", "val", "test"):
        path = annotations / f"instances_{split}.json"
        if not path.is_file():
            continue
        coco, _ = read_coco(path, image_root=dataset.root, check_images=False)
        for record in coco.images:
            target = by_name.get(record.file_name)
            if target is None or len(target.instances) != len(record.instances):
                raise SynthError(
                    f"{path}: {record.file_name} disagrees with anno_train.json; render the "
                    "dataset again into an empty folder"
                )
            for inst, source in zip(target.instances, record.instances, strict=True):
                if max(abs(a - b) for a, b in zip(inst.box, source.box, strict=True)) > 0.01:
                    raise SynthError(
                        f"{path}: a box of {record.file_name} disagrees with anno_train.json; "
                        "render the dataset again into an empty folder"
                    )
                inst.mask = source.mask
    return dataset
