"""The one in-memory dataset type every format reads into and writes from.

Boxes are xyxy in absolute pixels (float). Masks, when present, are COCO RLE dicts
(``{"size": [H, W], "counts": str}``, compressed counts) so that they stay small in memory and
go straight to pycocotools.

Three ids are kept apart on purpose:
- ``category_id``: the id written in files (Tianchi 1..20, COCO's own ids);
- ``label``: the contiguous index ``0..num_classes-1`` a model predicts;
- ``name``: the English name shown to people.
:class:`DetectionDataset` carries the explicit map between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricdet.data.categories import Category

Box = tuple[float, float, float, float]


@dataclass
class Instance:
    """One annotated object.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in absolute pixels.
        category_id: the file-level category id (see module docstring).
        mask: COCO RLE of the exact pixel mask, or ``None`` when only the box is known.
        raw_name: the name as written in the source file (Tianchi raw Chinese name), if any.
    """

    box: Box
    category_id: int
    mask: dict[str, Any] | None = None
    raw_name: str | None = None


@dataclass
class ImageRecord:
    """One image and its objects; an empty ``instances`` list means a defect-free image.

    Attributes:
        image_id: unique integer id within the dataset.
        file_name: path relative to the dataset root (e.g. ``defect_Images/a.jpg``).
        width, height: image size in pixels.
        instances: the annotated objects.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` when the source has no split.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)
    split: str | None = None


@dataclass
class DetectionDataset:
    """Images, their objects and the category map, rooted at a folder.

    Attributes:
        root: folder that ``ImageRecord.file_name`` is relative to.
        categories: the categories, in label order (``label = position in this tuple``).
        images: the image records.
    """

    root: Path
    categories: tuple[Category, ...]
    images: list[ImageRecord]

    @property
    def num_classes(self) -> int:
        """Number of foreground classes."""
        return len(self.categories)

    def image_path(self, record: ImageRecord) -> Path:
        return self.root / record.file_name

    def label_of(self, category_id: int) -> int:
        """Contiguous model label of a file-level category id."""
        for label, cat in enumerate(self.categories):
            if cat.id == category_id:
                return label
        known = ", ".join(str(c.id) for c in self.categories)
        raise KeyError(f"unknown category id {category_id}; known ids: {known}")

    def category_of(self, label: int) -> Category:
        """Category of a contiguous model label."""
        return self.categories[label]

    def subset(self, split: str | Sequence[str]) -> DetectionDataset:
        """The images of one split (or several), sharing root and categories."""
        wanted = {split} if isinstance(split, str) else set(split)
        images = [rec for rec in self.images if rec.split in wanted]
        return DetectionDataset(self.root, self.categories, images)
