"""The report of one evaluation (``fabricdet eval ... --report FILE.html``).

One self-contained HTML page with these sections (their anchors in brackets): summary
(``#summary``), per-class AP (``#per-class``), precision-recall curves (``#pr-curves``),
confusion between classes (``#confusion``), latency (``#speed``) and a gallery of the best
and worst images with their detections drawn (``#gallery``). Confusion and gallery show the
detections scoring at least the evaluation's ``defect_threshold``, the operating point of the
Tianchi submission; AP and the curves use every detection scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fabricdet.data.dataset import DetectionDataset
from fabricdet.metrics.predictions import Predictions
from fabricdet.report.confusion import BACKGROUND, Confusion, confusion, plot_confusion
from fabricdet.report.gallery import best_and_worst, caption, draw
from fabricdet.report.html import HtmlReport
from fabricdet.report.pr_curves import CocoCurves, coco_curves, plot_pr_curves
from fabricdet.report.speed import LatencyStats, plot_latency

#: Width of the gallery's images, in pixels (two to a row).
GALLERY_WIDTH = 560

SECTIONS = ("summary", "per-class", "pr-curves", "confusion", "speed", "gallery")

_METRICS = (
    ("COCO AP", "coco_ap"),
    ("COCO AP50", "coco_ap50"),
    ("COCO AP75", "coco_ap75"),
    ("COCO AP small / medium / large", ("coco_aps", "coco_apm", "coco_apl")),
    ("COCO AP / AP50, class-agnostic", ("coco_ap_agnostic", "coco_ap50_agnostic")),
    ("Tianchi score", "tianchi_score"),
    ("ACC (defective vs normal)", "acc"),
    ("VOC mAP", "map_voc"),
    ("mask AP", "mask_ap"),
    ("mask AP50 / AP75", ("mask_ap50", "mask_ap75")),
    ("mask instance mIoU", "mask_miou"),
    ("mask boundary IoU", "mask_boundary_iou"),
)


def _value(v: Any) -> object:
    """Floats as they are; NaN, -1 (no ground truth) and None shown as ``n/a``."""
    if v is None or (isinstance(v, float) and (math.isnan(v) or v == -1.0)):
        return "n/a"
    return v


def _ms(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f}"


def _summary(report: HtmlReport, summary: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    report.heading("Summary", anchor="summary")
    report.table(["setting", "value"], [[k, _value(v)] for k, v in info.items()])
    rows = []
    for name, key in _METRICS:
        keys = key if isinstance(key, tuple) else (key,)
        if all(k in summary for k in keys):
            vals = [_value(summary[k]) for k in keys]
            text = " / ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals)
            rows.append([name, text])
    report.table(["metric", "value"], rows)


def _per_class(
    report: HtmlReport,
    dataset: DetectionDataset,
    predictions: Predictions,
    curves: CocoCurves,
    summary: Mapping[str, Any],
) -> None:
    report.heading("Per-class AP", anchor="per-class")
    report.paragraph(
        "COCO AP averages precision over recall and IoU 0.5:0.95 (all areas, up to 100 "
        "detections per image); VOC AP is the Tianchi scorer's. n/a: no ground truth."
    )
    gt = {c.id: 0 for c in dataset.categories}
    for rec in dataset.images:
        for inst in rec.instances:
            gt[inst.category_id] = gt.get(inst.category_id, 0) + 1
    dets = dict(zip(*np.unique(predictions.category_ids, return_counts=True), strict=True))
    per_class = summary.get("per_class", {})
    rows = []
    for c in dataset.categories:
        aps = [curves.ap(c.id, iou) for iou in (None, 0.5, 0.75)]
        voc = per_class.get(c.name, {}).get("voc_ap")
        rows.append(
            [c.name, c.id, gt[c.id], int(dets.get(c.id, 0)), *map(_value, aps), _value(voc)]
        )
    header = ["class", "id", "objects", "detections", "AP", "AP50", "AP75", "VOC AP"]
    report.table(header, rows)


def _confusion(report: HtmlReport, matrix: Confusion, names: Mapping[int, str]) -> None:
    report.heading("Confusion between classes", anchor="confusion")
    report.paragraph(
        f"Detections scoring at least {matrix.score_threshold:.3f}, matched to ground truth "
        f"of any class at IoU >= {matrix.iou_threshold:g} (own class preferred). Row "
        f"{BACKGROUND}: detections on no object; column {BACKGROUND}: objects missed."
    )
    report.png(plot_confusion(matrix, [names[c] for c in matrix.category_ids]), "confusion matrix")
    top = matrix.top_confusions(10)
    if top:

        def name(cid: int | None) -> str:
            return BACKGROUND if cid is None else names[cid]

        rows = [[name(t), name(p), n] for t, p, n in top]
        report.table(["ground truth", "predicted", "count"], rows)


def _speed(report: HtmlReport, latencies_ms: Sequence[float], summary: Mapping[str, Any]) -> None:
    report.heading("Speed", anchor="speed")
    report.paragraph(
        "Model call and post-processing per image, after warm-up, measured during this "
        "evaluation (each batch's time divided among its images; image reading excluded). "
        f"Overall: {_ms(summary.get('ms_per_image'))} ms/image."
    )
    stats = LatencyStats.of(latencies_ms)
    report.table(["latency", "ms"], [[k, _value(v)] for k, v in stats.rows()])
    report.png(plot_latency(latencies_ms), "latency per image")


def _gallery(
    report: HtmlReport,
    dataset: DetectionDataset,
    predictions: Predictions,
    matrix: Confusion,
    count: int,
) -> None:
    report.heading("Gallery", anchor="gallery")
    report.paragraph(
        "White: ground truth. Colours: detections scoring at least "
        f"{matrix.score_threshold:.3f}" + (" (with their masks)." if predictions.has_masks else ".")
    )
    records = {r.image_id: r for r in dataset.images}
    label_of = {c.id: k for k, c in enumerate(dataset.categories)}
    names = [c.name for c in dataset.categories]
    kept = predictions.select(predictions.scores >= matrix.score_threshold)
    best, worst = best_and_worst(matrix.images, count)
    for title, outcomes in (("Best images", best), ("Worst images", worst)):
        report.heading(title, level=3)
        if not outcomes:
            report.paragraph("none")
        for o in outcomes:
            rec = records[o.image_id]
            image = cv2.imread(str(dataset.image_path(rec)), cv2.IMREAD_COLOR)
            if image is None:
                report.paragraph(f"{rec.file_name}: cannot be read")
                continue
            sel = np.flatnonzero(kept.image_ids == o.image_id)
            labels = np.array([label_of[int(c)] for c in kept.category_ids[sel]], np.int64)
            masks = [kept.masks[i] for i in sel] if kept.masks is not None else None
            drawn = draw(
                image,
                rec.instances,
                kept.boxes[sel],
                labels,
                kept.scores[sel],
                names,
                masks,
                width=GALLERY_WIDTH,
            )
            report.image(drawn, caption(rec.file_name, o), max_width=GALLERY_WIDTH)


def build_eval_report(
    summary: Mapping[str, Any],
    dataset: DetectionDataset,
    predictions: Predictions,
    latencies_ms: Sequence[float],
    *,
    data: str = "",
    device: str = "",
    gallery: int = 4,
    iou_threshold: float = 0.5,
) -> HtmlReport:
    """The report of one evaluation.

    Args:
        summary: :func:`fabricdet.engine.evaluate`'s result.
        dataset: the split it scored; predictions: every detection it scored.
        latencies_ms: per image (see :class:`fabricdet.engine.evaluate.EvalCapture`).
        data, device: shown in the summary.
        gallery: images in each of the best and worst rows.
        iou_threshold: matching IoU of the confusion matrix and the gallery.
    """
    names = {c.id: c.name for c in dataset.categories}
    threshold = float(summary.get("defect_threshold") or 0.0)
    report = HtmlReport(f"fabricdet evaluation: {Path(str(summary.get('model', ''))).name}")
    defective = sum(1 for r in dataset.images if r.instances)
    info = {
        "model": summary.get("model"),
        "training step": summary.get("step"),
        "data": data or str(dataset.root),
        "split": summary.get("split"),
        "NMS": summary.get("nms"),
        "device": device or None,
        "images (with defects)": f"{len(dataset.images)} ({defective})",
        "ground-truth objects": sum(len(r.instances) for r in dataset.images),
        "detections scored": len(predictions),
        "score threshold (AP)": summary.get("score_threshold"),
        "defect threshold (Tianchi, confusion, gallery)": summary.get("defect_threshold"),
    }
    _summary(report, summary, info)
    curves = coco_curves(dataset, predictions)
    _per_class(report, dataset, predictions, curves, summary)
    report.heading("Precision-recall curves", anchor="pr-curves")
    report.png(plot_pr_curves(curves, names), "precision-recall per class (box IoU)")
    matrix = confusion(dataset, predictions, iou_threshold=iou_threshold, score_threshold=threshold)
    _confusion(report, matrix, names)
    _speed(report, latencies_ms, summary)
    _gallery(report, dataset, predictions, matrix, gallery)
    return report


def write_eval_report(path: Path, *args: Any, **kwargs: Any) -> None:
    """:func:`build_eval_report` written to ``path`` (atomically); same arguments."""
    build_eval_report(*args, **kwargs).write(Path(path))
