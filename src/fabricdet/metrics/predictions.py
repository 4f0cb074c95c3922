"""The one predictions type: detections of many images, stored column-wise.

Columns (not a list of small objects) because every metric works on whole arrays: sort by
score, group by image, compute IoU matrices. Boxes are xyxy in absolute pixels, float32, like
every public boundary of fabricdet; ``category_ids`` are file-level ids (as in the dataset),
not model labels. Empty predictions are a valid object with zero rows, never ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.rle import Rle, encode_mask
from fabricdet.errors import DataError


def _numpy(x: Any) -> np.ndarray:
    """A numpy array from a numpy array, a list, or a torch tensor (without importing torch)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Detections of many images.

    Attributes:
        image_ids (ndarray[N], int64): the image of each detection (``ImageRecord.image_id``).
        category_ids (ndarray[N], int64): file-level category ids.
        boxes (ndarray[N, 4], float32): xyxy, absolute pixels.
        scores (ndarray[N], float32): confidences (any finite values; higher is surer).
        masks: ``N`` compressed RLEs (``str`` counts), or ``None`` for box-only predictions.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    masks: tuple[Rle, ...] | None = None

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise dtypes/shapes once here so every metric can rely on them.
        set_ = object.__setattr__
        set_(self, "image_ids", _numpy(self.image_ids).astype(np.int64).reshape(-1))
        set_(self, "category_ids", _numpy(self.category_ids).astype(np.int64).reshape(-1))
        set_(self, "boxes", _numpy(self.boxes).astype(np.float32).reshape(-1, 4))
        set_(self, "scores", _numpy(self.scores).astype(np.float32).reshape(-1))
        n = len(self.image_ids)
        lengths = {len(self.category_ids), len(self.boxes), len(self.scores)}
        if self.masks is not None:
            set_(self, "masks", tuple(self.masks))
            lengths.add(len(self.masks))
        if lengths != {n}:
            raise ValueError(f"prediction columns differ in length: {sorted(lengths | {n})}")

    @classmethod
    def empty(cls) -> Predictions:
        z = np.zeros(0)
        return cls(z, z, np.zeros((0, 4)), z)

    @classmethod
    def from_model_outputs(
        cls,
        dataset: DetectionDataset,
        image_ids: Sequence[int],
        outputs: Sequence[Mapping[str, Any]],
        mask_threshold: float = 0.5,
    ) -> Predictions:
        """Predictions from a detector's eval outputs (torchvision's contract).

        Args:
            dataset: gives the ``label -> category_id`` map.
            image_ids: the image id of each output.
            outputs: per image ``{"boxes": [K, 4], "scores": [K], "labels": [K]}`` and
                optionally ``"masks": [K, 1, H, W]`` or ``[K, H, W]`` (probabilities or
                binary; thresholded at ``mask_threshold``). Tensors or arrays.
        """
        label_to_id = np.array([c.id for c in dataset.categories], dtype=np.int64)
        ids, cats, boxes, scores, masks = [], [], [], [], []
        with_masks = bool(outputs) and all("masks" in o for o in outputs)
        for iid, out in zip(image_ids, outputs, strict=True):
            b = _numpy(out["boxes"]).reshape(-1, 4)
            ids.append(np.full(len(b), iid, dtype=np.int64))
            cats.append(label_to_id[_numpy(out["labels"]).astype(np.int64).reshape(-1)])
            boxes.append(b)
            scores.append(_numpy(out["scores"]).reshape(-1))
            if with_masks:
                m = _numpy(out["masks"])
                m = m.reshape(len(b), *m.shape[-2:])
                masks.extend(encode_mask(mk >= mask_threshold) for mk in m)
        if not ids:
            return cls.empty()
        return cls(
            np.concatenate(ids),
            np.concatenate(cats),
            np.concatenate(boxes),
            np.concatenate(scores),
            tuple(masks) if with_masks else None,
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def select(self, index: np.ndarray) -> Predictions:
        """The rows picked by a boolean mask or an index array, in that order."""
        idx = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        masks = tuple(self.masks[i] for i in idx) if self.masks is not None else None
        return Predictions(
            self.image_ids[idx], self.category_ids[idx], self.boxes[idx], self.scores[idx], masks
        )

    def check_against(self, dataset: DetectionDataset) -> None:
        """Raise a :class:`DataError` if an image or category id is not in ``dataset``."""
        known_images = np.array([r.image_id for r in dataset.images], dtype=np.int64)
        bad = np.setdiff1d(self.image_ids, known_images)
        if bad.size:
            raise DataError(
                f"predictions name {bad.size} image id(s) not in the dataset "
                f"(first: {bad[:5].tolist()}); evaluate against the dataset they were made for"
            )
        known_cats = np.array([c.id for c in dataset.categories], dtype=np.int64)
        bad = np.setdiff1d(self.category_ids, known_cats)
        if bad.size:
            raise DataError(
                f"predictions use category id(s) {bad[:5].tolist()} that the dataset does "
                f"not have (known: {known_cats.tolist()})"
            )
