"""Every metric of a prediction set in one flat summary (what ``fabricdet eval-preds`` prints).

Keys of :func:`evaluate_predictions` (others parse this form; keep it stable):
``tianchi_score``, ``acc``, ``map_voc``, ``map_voc_per_iou`` ({"0.1": ...}),
``coco_ap``, ``coco_ap50``, ``coco_ap75``, ``coco_aps``, ``coco_apm``, ``coco_apl``,
``coco_ap_agnostic``, ``coco_ap50_agnostic`` (class-agnostic: a defect found and placed counts
whatever class it is given, what an inspection line that only flags defects needs),
``per_class`` ({name: {"voc_ap", "coco_ap"}}), ``num_images``, ``num_gt``,
``num_predictions``; and, when masks are present on both sides, ``mask_ap``, ``mask_ap50``,
``mask_ap75``, ``mask_miou``, ``mask_boundary_iou``. COCO values are -1 where there is no
ground truth (pycocotools' convention).
"""

from __future__ import annotations

from typing import Any

from fabricdet.data.dataset import DetectionDataset
from fabricdet.metrics.coco_eval import coco_metrics, gt_coco, has_all_masks
from fabricdet.metrics.mask_metrics import instance_mask_metrics
from fabricdet.metrics.predictions import Predictions
from fabricdet.metrics.tianchi_score import tianchi_score


def evaluate_predictions(
    dataset: DetectionDataset,
    predictions: Predictions,
    *,
    score_threshold: float | None = None,
    boundary_d: int = 2,
    verbose: bool = False,
) -> dict[str, Any]:
    """All metrics of ``predictions`` on ``dataset`` as a JSON-ready dict (see module doc).

    Args:
        score_threshold: for the Tianchi ACC (an image is predicted defective when it has a
            detection scoring at least this; default: any detection) and the mask IoUs.
        boundary_d: band width (pixels) of the boundary IoU.
        verbose: pycocotools' own report on stderr.
    """
    predictions.check_against(dataset)
    tc = tianchi_score(dataset, predictions, score_threshold=score_threshold)
    gt = gt_coco(dataset, verbose)
    box = coco_metrics(dataset, predictions, iou_type="bbox", verbose=verbose, gt=gt)
    found = coco_metrics(dataset, predictions, verbose=verbose, gt=gt, class_agnostic=True)
    names = {c.id: c.name for c in dataset.categories}
    per_class = {
        names[c]: {"voc_ap": tc.per_class.get(c, 0.0), "coco_ap": box.per_class.get(c, -1.0)}
        for c in names
        if c in tc.per_class or c in box.per_class
    }
    out: dict[str, Any] = {
        "tianchi_score": tc.score,
        "acc": tc.acc,
        "map_voc": tc.map,
        "map_voc_per_iou": {f"{t:g}": v for t, v in tc.map_per_iou.items()},
        "coco_ap": box.ap,
        "coco_ap50": box.ap50,
        "coco_ap75": box.ap75,
        "coco_aps": box.aps,
        "coco_apm": box.apm,
        "coco_apl": box.apl,
        "coco_ap_agnostic": found.ap,
        "coco_ap50_agnostic": found.ap50,
        "per_class": per_class,
        "num_images": len(dataset.images),
        "num_gt": sum(len(r.instances) for r in dataset.images),
        "num_predictions": len(predictions),
    }
    if predictions.has_masks and has_all_masks(dataset) and out["num_gt"]:
        segm = coco_metrics(dataset, predictions, iou_type="segm", verbose=verbose, gt=gt)
        inst = instance_mask_metrics(
            dataset, predictions, d=boundary_d, score_threshold=score_threshold or 0.0
        )
        out.update(
            mask_ap=segm.ap,
            mask_ap50=segm.ap50,
            mask_ap75=segm.ap75,
            mask_miou=inst.miou,
            mask_boundary_iou=inst.boundary_iou,
        )
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate_predictions` output."""
    lines = [
        f"images {summary['num_images']}, ground-truth objects {summary['num_gt']}, "
        f"predictions {summary['num_predictions']}",
        "",
        f"{'Tianchi score':<22}{summary['tianchi_score']:8.4f}   (0.2 * ACC + 0.8 * mAP)",
        f"{'  ACC':<22}{summary['acc']:8.4f}",
        f"{'  mAP (VOC)':<22}{summary['map_voc']:8.4f}   "
        + ", ".join(f"@{k} {v:.4f}" for k, v in summary["map_voc_per_iou"].items()),
        f"{'COCO AP':<22}{summary['coco_ap']:8.4f}",
        f"{'  AP50 / AP75':<22}{summary['coco_ap50']:8.4f} {summary['coco_ap75']:8.4f}",
        f"{'  APs / APm / APl':<22}{summary['coco_aps']:8.4f} {summary['coco_apm']:8.4f} "
        f"{summary['coco_apl']:8.4f}",
    ]
    if "mask_ap" in summary:
        lines += [
            f"{'Mask AP':<22}{summary['mask_ap']:8.4f}",
            f"{'  AP50 / AP75':<22}{summary['mask_ap50']:8.4f} {summary['mask_ap75']:8.4f}",
            f"{'  instance mIoU':<22}{summary['mask_miou']:8.4f}",
            f"{'  boundary IoU':<22}{summary['mask_boundary_iou']:8.4f}",
        ]
    if summary["per_class"]:
        lines += ["", f"{'class':<22}{'VOC AP':>8} {'COCO AP':>8}"]
        for name, v in summary["per_class"].items():
            lines.append(f"{name:<22}{v['voc_ap']:8.4f} {v['coco_ap']:8.4f}")
    return "\n".join(lines)
