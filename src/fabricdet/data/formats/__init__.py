"""Dataset formats: Tianchi folders, COCO JSON and YOLO txt, read into and written from
:class:`~fabricdet.data.dataset.DetectionDataset`, with validation.

Reading:
- :func:`load_dataset` (detects the format) / :func:`load_dataset_with_report`;
- :func:`read_tianchi`, :func:`read_coco`, :func:`read_yolo`: ``(dataset, report)``.

Writing (annotation files only, atomic, nothing written when validation fails):
- :func:`write_tianchi`, :func:`write_coco`, :func:`write_yolo`;
- :func:`export_dataset`: a complete folder, images included (what ``fabricdet convert`` does).

Strict reads raise one :class:`InvalidDataError` listing every problem; lenient reads skip the
bad records and list them in the :class:`LoadReport`.
"""

from __future__ import annotations

from fabricdet.data.formats.coco import read_coco
from fabricdet.data.formats.coco_write import coco_dict, write_coco
from fabricdet.data.formats.crowd import CrowdImageRecord, crowd_of
from fabricdet.data.formats.detect import (
    FORMATS,
    detect_format,
    load_dataset,
    load_dataset_with_report,
)
from fabricdet.data.formats.export import export_dataset, information_lost
from fabricdet.data.formats.problems import InvalidDataError, LoadReport, Problem
from fabricdet.data.formats.splits import assign_splits
from fabricdet.data.formats.tianchi import read_tianchi, write_tianchi
from fabricdet.data.formats.yolo import read_yolo, write_yolo

__all__ = [
    "FORMATS",
    "CrowdImageRecord",
    "InvalidDataError",
    "LoadReport",
    "Problem",
    "assign_splits",
    "coco_dict",
    "crowd_of",
    "detect_format",
    "export_dataset",
    "information_lost",
    "load_dataset",
    "load_dataset_with_report",
    "read_coco",
    "read_tianchi",
    "read_yolo",
    "write_coco",
    "write_tianchi",
    "write_yolo",
]
