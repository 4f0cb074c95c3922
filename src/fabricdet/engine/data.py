"""The torch side of a :class:`~fabricdet.data.dataset.DetectionDataset`: images read and
resized, targets in the detector's contract, flips, and a collate that keeps lists.

A sample is ``(image, target, meta)``:
- ``image`` (Tensor[3, h, w] float32 in [0, 1], RGB), resized keeping the aspect ratio;
- ``target``: ``boxes`` (Tensor[N, 4] float32, xyxy in resized pixels), ``labels``
  (Tensor[N] int64, contiguous ``0..num_classes-1``) and, with ``DataConfig.masks="full"``,
  ``masks`` (Tensor[N, h, w] uint8) — exactly what ``model(images, targets)`` takes;
- ``meta`` (:class:`SampleMeta`): the image id, file and resize, to map predictions back.

Augmentation is drawn from a per-sample seed carried in the index (``dataset[(i, seed)]``),
not from a worker's global random state: the same step sees the same flips whatever the number
of workers, and a resumed run sees exactly the flips of an uninterrupted one.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats import assign_splits
from fabricdet.data.formats.rle import decode_mask
from fabricdet.engine.config import DataConfig
from fabricdet.engine.transforms import (
    Resize,
    crop,
    crop_window,
    flip_horizontal,
    flip_vertical,
    resize_boxes,
    resize_image,
    resize_masks,
)
from fabricdet.errors import DataError

ALL_SPLITS = "all"


@dataclass(frozen=True)
class SampleMeta:
    """Where a sample came from and how it was transformed.

    Attributes:
        index: position in ``DetectionDataset.images`` (-1 for a file outside a dataset).
        image_id: ``ImageRecord.image_id`` (-1 for a file outside a dataset).
        file: the image file.
        resize: original and model-input sizes.
        hflip, vflip: whether the sample was mirrored.
    """

    index: int
    image_id: int
    file: Path
    resize: Resize
    hflip: bool = False
    vflip: bool = False


class Batch(NamedTuple):
    """A collated batch: lists, not stacked tensors (images differ in size)."""

    images: list[Tensor]
    targets: list[dict[str, Tensor]]
    metas: list[SampleMeta]


def read_image(path: Path) -> np.ndarray:
    """An image file as ``ndarray[H, W, 3]`` uint8 RGB.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found; check the path or the dataset root")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(
            f"{path}: cannot decode the image (corrupt, truncated or not an image); "
            "replace the file or remove its record from the dataset"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``ndarray[H, W, 3]`` uint8 -> ``Tensor[3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def load_for_model(path: Path, cfg: DataConfig) -> tuple[Tensor, Resize]:
    """An image file read and resized as the model expects it (inference on loose files)."""
    image, r = resize_image(read_image(path), cfg.max_size, cfg.size_divisor)
    return image_to_tensor(image), r


def with_splits(dataset: DetectionDataset) -> DetectionDataset:
    """``dataset`` with a split for every image (:func:`assign_splits` fills the missing ones
    deterministically, so training and a later evaluation agree on the held-out images)."""
    if all(rec.split is not None for rec in dataset.images):
        return dataset
    return assign_splits(dataset)


def select_split(dataset: DetectionDataset, split: str) -> DetectionDataset:
    """The images of ``split`` (``"all"``: every image), after :func:`with_splits`.

    Raises:
        DataError: the split is empty; the message lists the splits the dataset has.
    """
    dataset = with_splits(dataset)
    if split == ALL_SPLITS:
        return dataset
    subset = dataset.subset(split)
    if not subset.images:
        counts: dict[str, int] = {}
        for rec in dataset.images:
            counts[str(rec.split)] = counts.get(str(rec.split), 0) + 1
        have = ", ".join(f"{k} ({v} images)" for k, v in sorted(counts.items())) or "none"
        raise DataError(
            f"{dataset.root}: split {split!r} has no images; the dataset has: {have}. "
            f"Choose another split (or '{ALL_SPLITS}')"
        )
    return subset


class TorchDetectionDataset(torch.utils.data.Dataset):
    """Samples of a :class:`DetectionDataset` (see the module docstring).

    Index with ``i`` for the untouched sample (evaluation) or with ``(i, seed)`` to apply the
    configured flips drawn from ``seed`` (training).
    """

    def __init__(self, dataset: DetectionDataset, cfg: DataConfig) -> None:
        self.dataset = dataset
        self.cfg = cfg
        self._label = {c.id: k for k, c in enumerate(dataset.categories)}
        if cfg.masks == "full":
            missing = [
                r.file_name for r in dataset.images if any(i.mask is None for i in r.instances)
            ]
            if missing:
                raise DataError(
                    f"{dataset.root}: data.masks=full but {len(missing)} image(s) have objects "
                    f"without masks (first: {missing[0]}); use data.masks=none for box labels"
                )

    def __len__(self) -> int:
        return len(self.dataset.images)

    def __getitem__(
        self, key: int | tuple[int, int]
    ) -> tuple[Tensor, dict[str, Tensor], SampleMeta]:
        index, seed = (key, None) if isinstance(key, int) else (int(key[0]), int(key[1]))
        rec = self.dataset.images[index]
        path = self.dataset.image_path(rec)
        image = read_image(path)
        if image.shape[:2] != (rec.height, rec.width):
            raise DataError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} but its record says "
                f"{rec.width}x{rec.height}; re-export the annotations for this image"
            )
        image, r = resize_image(image, self.cfg.max_size, self.cfg.size_divisor)
        boxes, labels, masks = self._objects(rec, r)
        hflip = vflip = False
        if seed is not None:
            rng = np.random.default_rng(seed)
            if self.cfg.crop_width and self.cfg.crop_height:
                window = crop_window(
                    image.shape[1], image.shape[0], (self.cfg.crop_width, self.cfg.crop_height),
                    boxes, rng, self.cfg.crop_on_object,
                )  # fmt: skip
                image, boxes, kept, masks = crop(image, boxes, masks, window)
                labels = labels[kept]
            hflip = bool(rng.random() < self.cfg.hflip)
            vflip = bool(rng.random() < self.cfg.vflip)
            if hflip:
                image, boxes, masks = flip_horizontal(image, boxes, masks)
            if vflip:
                image, boxes, masks = flip_vertical(image, boxes, masks)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
        if masks is not None:
            target["masks"] = torch.from_numpy(masks)
        meta = SampleMeta(index, rec.image_id, path, r, hflip, vflip)
        return image_to_tensor(image), target, meta

    def _objects(
        self, rec: ImageRecord, r: Resize
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``boxes`` (ndarray[N, 4] float32), ``labels`` (ndarray[N] int64) and ``masks``
        (ndarray[N, h, w] uint8, or None) of a record, in resized pixels."""
        n = len(rec.instances)
        boxes = np.array([i.box for i in rec.instances], dtype=np.float32).reshape(n, 4)
        labels = np.array([self._label[i.category_id] for i in rec.instances], dtype=np.int64)
        masks = None
        if self.cfg.masks == "full":
            full = np.zeros((n, rec.height, rec.width), dtype=np.uint8)
            for k, inst in enumerate(rec.instances):
                full[k] = decode_mask(inst.mask)  # type: ignore[arg-type]  # checked in __init__
            masks = resize_masks(full, r)
        return resize_boxes(boxes, r), labels, masks


def collate(samples: Sequence[tuple[Tensor, dict[str, Tensor], SampleMeta]]) -> Batch:
    """Lists of images, targets and metas (torchvision's detection contract)."""
    return Batch([s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples])


def worker_context(num_workers: int) -> str | None:
    """Start method of DataLoader workers: ``forkserver`` (else ``spawn``), never ``fork``.

    A forked worker inherits the parent's locks but not its threads: when the parent has run
    OpenCV, OpenMP or BLAS thread pools, the child can block forever on a lock held by a
    thread that no longer exists (seen in tests after rendering synthetic data in-process).
    A forkserver child starts from a clean process instead.
    """
    if num_workers == 0:
        return None
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python and numpy from the worker's torch seed, and
    stop OpenCV spawning its own threads inside each worker process (oversubscription)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    cv2.setNumThreads(1)
