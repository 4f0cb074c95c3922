"""COCO AP through pycocotools, built in memory (no temporary files).

The ground truth is :func:`fabricdet.data.formats.coco_dict` (the very dict ``write_coco``
writes, crowd regions included as ``iscrowd=1``), so the numbers equal a file-based run of
``COCO(file)``, ``loadRes(file)``, ``COCOeval``. For mask AP the results carry only their
segmentation (as detectron2 does), so that pycocotools takes detection areas from the masks.
pycocotools' prints are swallowed unless ``verbose`` (then they go to stderr, keeping stdout
clean for machine-readable output).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.coco_write import coco_dict
from fabricdet.data.formats.crowd import crowd_of
from fabricdet.metrics.prediction_files import coco_results
from fabricdet.metrics.predictions import Predictions

IouType = Literal["bbox", "segm"]


@dataclass(frozen=True)
class CocoMetrics:
    """COCO summary numbers (pycocotools' ``stats[0:6]``; -1 where there is no ground truth).

    Attributes:
        ap: AP@[0.5:0.95]; ap50, ap75: AP at IoU 0.5 and 0.75;
        aps, apm, apl: AP of small (< 32^2 px), medium and large objects;
        per_class: category id -> AP@[0.5:0.95], for classes with ground truth.
    """

    ap: float
    ap50: float
    ap75: float
    aps: float
    apm: float
    apl: float
    per_class: dict[int, float]


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    target = sys.stderr if verbose else io.StringIO()
    with contextlib.redirect_stdout(target):
        yield


def gt_coco(dataset: DetectionDataset, verbose: bool = False) -> COCO:
    """An indexed pycocotools ``COCO`` of the dataset's ground truth."""
    coco = COCO()
    coco.dataset = coco_dict(dataset)
    with _quiet(verbose):
        coco.createIndex()
    return coco


def has_all_masks(dataset: DetectionDataset) -> bool:
    """True when every instance and crowd region has a mask (mask AP needs them all)."""
    return all(
        inst.mask is not None for r in dataset.images for inst in (*r.instances, *crowd_of(r))
    )


def coco_metrics(
    dataset: DetectionDataset,
    predictions: Predictions,
    *,
    iou_type: IouType = "bbox",
    verbose: bool = False,
    gt: COCO | None = None,
    class_agnostic: bool = False,
) -> CocoMetrics:
    """COCO box or mask AP of ``predictions`` on ``dataset``.

    Args:
        iou_type: ``"bbox"`` or ``"segm"`` (needs masks on every ground-truth object and
            every prediction).
        class_agnostic: match detections to objects whatever their classes (pycocotools'
            ``useCats = 0``): how well defects are found and placed, not named. ``per_class``
            is then empty.
        verbose: show pycocotools' own report (on stderr).
        gt: a :func:`gt_coco` of ``dataset`` to reuse between calls.

    Raises:
        DataError: predictions for unknown images/categories.
        ValueError: ``"segm"`` without masks on both sides.
    """
    predictions.check_against(dataset)
    if iou_type == "segm" and not (predictions.has_masks and has_all_masks(dataset)):
        raise ValueError("mask AP needs a mask on every ground-truth object and prediction")
    coco_gt = gt if gt is not None else gt_coco(dataset, verbose)
    results = coco_results(predictions, with_masks=iou_type == "segm")
    if iou_type == "segm":
        for r in results:
            del r["bbox"]  # else loadRes takes detection areas from the boxes
    with _quiet(verbose):
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list; an empty result set is still valid
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(coco_gt.dataset["images"]),
                "categories": list(coco_gt.dataset["categories"]),
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.useCats = 0 if class_agnostic else 1
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats[:6]]
    per_class = {} if class_agnostic else _per_class(ev)
    return CocoMetrics(*stats, per_class=per_class)


def _per_class(ev: COCOeval) -> dict[int, float]:
    """AP@[0.5:0.95] per category, all areas, the largest maxDets (as detectron2 reports)."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    gt_cats = {a["category_id"] for a in ev.cocoGt.dataset["annotations"] if not a["iscrowd"]}
    out: dict[int, float] = {}
    for k, cid in enumerate(ev.params.catIds):
        if cid not in gt_cats:
            continue
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[int(cid)] = float(np.mean(p)) if p.size else 0.0
    return out
