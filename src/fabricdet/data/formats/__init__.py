"""Dataset formats: Tianchi folders, COCO JSON and YOLO txt, read into and written from
:class:`~fabricdet.data.dataset.DetectionDataset`, with validation.

Public API:
- :func:`write_tianchi`, :func:`write_coco`: annotation files of a dataset (atomic writes).
- :func:`read_tianchi`: ``(dataset, report)`` of a Tianchi folder.
- :func:`assign_splits`: deterministic train/val/test assignment by file-name hash.
- :class:`LoadReport`, :class:`Problem`, :class:`InvalidDataError`: validation results.
"""

from __future__ import annotations

from fabricdet.data.formats.coco_write import coco_dict, write_coco
from fabricdet.data.formats.crowd import CrowdImageRecord, crowd_of
from fabricdet.data.formats.problems import InvalidDataError, LoadReport, Problem
from fabricdet.data.formats.splits import assign_splits
from fabricdet.data.formats.tianchi import read_tianchi, write_tianchi

__all__ = [
    "CrowdImageRecord",
    "InvalidDataError",
    "LoadReport",
    "Problem",
    "assign_splits",
    "coco_dict",
    "crowd_of",
    "read_tianchi",
    "write_coco",
    "write_tianchi",
]
