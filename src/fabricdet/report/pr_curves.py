"""Precision-recall curves and per-class AP from pycocotools' accumulated precision array.

:func:`coco_curves` runs ``COCOeval`` (box or mask IoU) and keeps its ``precision`` array
(``[T, R, K, A, M]``: IoU thresholds, 101 recall points, categories, area ranges, max
detections) for all areas and the largest ``maxDets``, the slice COCO AP averages. Values are
-1 where a category has no ground truth.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fabricdet.data.dataset import DetectionDataset
from fabricdet.metrics.coco_eval import IouType, gt_coco
from fabricdet.metrics.prediction_files import coco_results
from fabricdet.metrics.predictions import Predictions
from fabricdet.report.plots import figure_png, new_figure, subplot_grid

#: Small multiples per row in :func:`plot_pr_curves`.
NCOLS = 4


@dataclass(frozen=True)
class CocoCurves:
    """Interpolated precision at fixed recall points, per IoU threshold and category.

    Attributes:
        category_ids (tuple[int, ...]): the K evaluated categories, in ``precision`` order.
        iou_thresholds (ndarray[T]): 0.5, 0.55, ..., 0.95.
        recall (ndarray[R]): the recall points 0, 0.01, ..., 1.
        precision (ndarray[T, R, K]): -1 where the category has no ground truth.
    """

    category_ids: tuple[int, ...]
    iou_thresholds: np.ndarray
    recall: np.ndarray
    precision: np.ndarray

    def ap(self, category_id: int, iou: float | None = None) -> float:
        """AP of one category: mean precision over recall points (and over IoU thresholds
        when ``iou`` is None, i.e. COCO AP@[.5:.95]); NaN without ground truth."""
        p = self.precision[:, :, self.category_ids.index(category_id)]
        if iou is not None:
            p = p[int(np.argmin(np.abs(self.iou_thresholds - iou)))]
        p = p[p > -1]
        return float(p.mean()) if p.size else math.nan


def _empty_results(gt: COCO) -> COCO:
    """A result set with no detections (``loadRes`` refuses an empty list)."""
    dt = COCO()
    dt.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": list(gt.dataset["categories"]),
        "annotations": [],
    }
    dt.createIndex()
    return dt


def coco_curves(
    dataset: DetectionDataset, predictions: Predictions, iou_type: IouType = "bbox"
) -> CocoCurves:
    """Run COCOeval on ``predictions`` and keep its precision array (see module doc).

    Args:
        iou_type: ``"segm"`` needs masks on both sides (see
            :func:`~fabricdet.metrics.coco_metrics`).
    """
    predictions.check_against(dataset)
    results = coco_results(predictions, with_masks=iou_type == "segm")
    if iou_type == "segm":
        for r in results:
            del r["bbox"]  # else loadRes takes detection areas from the boxes
    gt = gt_coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        dt = gt.loadRes(results) if results else _empty_results(gt)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # all areas, largest maxDets
    return CocoCurves(
        category_ids=tuple(int(c) for c in ev.params.catIds),
        iou_thresholds=np.asarray(ev.params.iouThrs, dtype=np.float64),
        recall=np.asarray(ev.params.recThrs, dtype=np.float64),
        precision=precision,
    )


def plot_pr_curves(curves: CocoCurves, names: Mapping[int, str]) -> bytes:
    """Small multiples, one per category with ground truth: precision against recall at IoU
    0.5 and 0.75, and the mean over IoU 0.5:0.95. Returns PNG bytes."""
    shown = [c for c in curves.category_ids if not math.isnan(curves.ap(c))]
    nrows = max(1, math.ceil(len(shown) / NCOLS))
    fig = new_figure(3.0 * min(NCOLS, max(len(shown), 1)), 2.6 * nrows)
    axes = subplot_grid(fig, len(shown), NCOLS)
    if not shown:
        axes[0].text(0.5, 0.5, "no ground truth", ha="center", va="center")
        axes[0].set_axis_off()
        return figure_png(fig)
    r = curves.recall
    for ax, cid in zip(axes, shown, strict=False):
        k = curves.category_ids.index(cid)
        p = curves.precision[:, :, k]
        for iou, style in ((0.5, "-"), (0.75, "--")):
            t = int(np.argmin(np.abs(curves.iou_thresholds - iou)))
            ax.plot(r, np.clip(p[t], 0, None), style, label=f"IoU {iou:g}")
        ax.plot(r, np.clip(p, 0, None).mean(0), ":", label="mean .5:.95")
        ax.set_title(f"{names.get(cid, str(cid))}  AP {curves.ap(cid):.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower left")
    return figure_png(fig)
