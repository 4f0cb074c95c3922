"""Metrics: the predictions type and files, COCO AP (pycocotools), the Tianchi score (VOC
mAP and image accuracy) and mask metrics for thin defects.

Public API:
- :class:`Predictions`; :func:`read_predictions`, :func:`write_tianchi_submission`,
  :func:`write_coco_results`;
- :func:`coco_metrics` (box or mask AP), :func:`tianchi_score`, :func:`voc_map`,
  :func:`instance_mask_metrics`, :func:`boundary_iou`, :func:`mask_to_boundary`;
- :func:`evaluate_predictions`: everything at once, as ``fabricdet eval-preds`` prints it.
"""

from __future__ import annotations

from fabricdet.metrics.coco_eval import CocoMetrics, coco_metrics
from fabricdet.metrics.evaluate import evaluate_predictions, format_summary
from fabricdet.metrics.iou import box_iou
from fabricdet.metrics.mask_metrics import (
    MaskInstanceMetrics,
    boundary_iou,
    instance_mask_metrics,
    mask_iou,
    mask_to_boundary,
)
from fabricdet.metrics.prediction_files import (
    read_predictions,
    write_coco_results,
    write_tianchi_submission,
)
from fabricdet.metrics.predictions import Predictions
from fabricdet.metrics.tianchi_score import (
    TianchiScore,
    best_defect_threshold,
    image_accuracy,
    tianchi_score,
)
from fabricdet.metrics.voc import GroundTruth, VocResult, voc_ap, voc_map

__all__ = [
    "CocoMetrics",
    "GroundTruth",
    "MaskInstanceMetrics",
    "Predictions",
    "TianchiScore",
    "VocResult",
    "best_defect_threshold",
    "boundary_iou",
    "box_iou",
    "coco_metrics",
    "evaluate_predictions",
    "format_summary",
    "image_accuracy",
    "instance_mask_metrics",
    "mask_iou",
    "mask_to_boundary",
    "read_predictions",
    "tianchi_score",
    "voc_ap",
    "voc_map",
    "write_coco_results",
    "write_tianchi_submission",
]
