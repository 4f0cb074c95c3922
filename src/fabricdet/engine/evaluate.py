"""Evaluation of a trained model on a dataset split, for one NMS method or all of them.

:func:`evaluate` runs the model, maps its detections back to original pixels and file-level
category ids (:class:`~fabricdet.metrics.Predictions`), scores them with
:func:`~fabricdet.metrics.evaluate_predictions` (COCO AP/AP50/AP75, Tianchi score, ACC, VOC
mAP, mask metrics when both sides have masks), adds the latency, and optionally writes the
Tianchi submission, the COCO results and the metrics as JSON. An :class:`EvalCapture` passed
to it keeps what was scored (the split, the predictions, per-image latencies) for a report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.data.formats.rle import encode_mask
from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.engine.config import EvalConfig
from fabricdet.engine.data import TorchDetectionDataset, collate, select_split, worker_context
from fabricdet.engine.distributed import resolve_device
from fabricdet.engine.inference import Runner, nms_switched
from fabricdet.engine.monitor import Progress
from fabricdet.errors import DataError
from fabricdet.metrics import (
    Predictions,
    best_defect_threshold,
    evaluate_predictions,
    tianchi_score,
    write_coco_results,
    write_tianchi_submission,
)
from fabricdet.ops.nms import NMS_METHODS


@dataclass
class EvalCapture:
    """What :func:`evaluate` scored, filled in place when passed to it (for a report).

    Attributes:
        dataset: the split scored.
        predictions: every detection scored (score >= ``eval.score_threshold``).
        latencies_ms: milliseconds per image, in dataset order (see :func:`predict_dataset`).
        device: where the model ran.
    """

    dataset: DetectionDataset | None = None
    predictions: Predictions = field(default_factory=Predictions.empty)
    latencies_ms: list[float] = field(default_factory=list)
    device: str = ""


def category_ids(model_categories: Sequence[Category], dataset: DetectionDataset) -> np.ndarray:
    """The dataset's category id of each model label.

    Matched by id when every model category's id names the same category in the dataset
    (Tianchi ids, COCO files written by fabricdet), else by name (a YOLO export numbers its
    classes afresh).

    Returns:
        ndarray[num_model_classes] int64.

    Raises:
        DataError: the dataset lacks some of the model's categories.
    """
    by_id = {c.id: c.name for c in dataset.categories}
    if all(by_id.get(c.id) == c.name for c in model_categories):
        return np.array([c.id for c in model_categories], dtype=np.int64)
    by_name = {c.name: c.id for c in dataset.categories}
    missing = [c.name for c in model_categories if c.name not in by_name]
    if missing:
        raise DataError(
            f"{dataset.root}: the model's categories {missing[:5]} are not in this dataset "
            f"(it has {[c.name for c in dataset.categories][:10]}); evaluate on a dataset with "
            "the categories the model was trained on"
        )
    return np.array([by_name[c.name] for c in model_categories], dtype=np.int64)


def predict_dataset(
    loaded: LoadedModel,
    dataset: DetectionDataset,
    *,
    eval_cfg: EvalConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    latencies_ms: list[float] | None = None,
) -> tuple[Predictions, float]:
    """Run the model on every image of ``dataset`` with its current NMS.

    Args:
        latencies_ms: if given, gets one entry per image in dataset order: its timed batch's
            milliseconds divided evenly among the batch's images.

    Returns:
        the predictions (original pixels, dataset category ids, score >= the threshold) and
        the latency in milliseconds per image (model call + post-processing, after warm-up).
    """
    cfg = eval_cfg or loaded.config.eval
    ids_of_label = category_ids(loaded.categories, dataset)
    # The model sees images only; ground-truth masks are read by the metrics, not decoded here.
    data_cfg = dataclasses.replace(loaded.config.data, masks="none")
    loader = torch.utils.data.DataLoader(
        TorchDetectionDataset(dataset, data_cfg),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=min(data_cfg.num_workers, 2),
        collate_fn=collate,
        multiprocessing_context=worker_context(min(data_cfg.num_workers, 2)),
    )
    runner = Runner(loaded.model, resolve_device(device), cfg.score_threshold)
    columns: dict[str, list[Any]] = {"ids": [], "cats": [], "boxes": [], "scores": [], "masks": []}
    has_masks = True
    n = len(dataset.images)
    bar = Progress(n, "eval", enabled=progress, every=max(cfg.batch_size, n // 10))
    try:
        for k, batch in enumerate(loader):
            resizes = [m.resize for m in batch.metas]
            if k == 0:
                runner.warm_up(batch.images, resizes, cfg.warmup_iters)
            before = runner.seconds
            dets = runner(batch.images, resizes)
            if latencies_ms is not None:
                each = 1000.0 * (runner.seconds - before) / len(batch.images)
                latencies_ms.extend([each] * len(batch.images))
            for meta, det in zip(batch.metas, dets, strict=True):
                columns["ids"].append(np.full(len(det.boxes), meta.image_id, dtype=np.int64))
                columns["cats"].append(ids_of_label[det.labels])
                columns["boxes"].append(det.boxes)
                columns["scores"].append(det.scores)
                has_masks = has_masks and det.masks is not None
                if det.masks is not None:
                    columns["masks"].extend(encode_mask(m >= 0.5) for m in det.masks)
            bar.update(len(batch.images))
    finally:
        bar.close()
    if not columns["ids"]:
        return Predictions.empty(), runner.ms_per_image
    preds = Predictions(
        np.concatenate(columns["ids"]),
        np.concatenate(columns["cats"]),
        np.concatenate(columns["boxes"]),
        np.concatenate(columns["scores"]),
        tuple(columns["masks"]) if has_masks else None,
    )
    return preds, runner.ms_per_image


def calibrate_defect_threshold(
    loaded: LoadedModel,
    dataset: DetectionDataset,
    *,
    split: str = "val",
    device: str = "auto",
    progress: bool = True,
) -> float:
    """The ``eval.defect_threshold`` that maximises image-level accuracy (defective vs normal)
    on ``split``, with the model's current NMS (see
    :func:`~fabricdet.metrics.best_defect_threshold`). Calibrate on a split the model was not
    trained on and report accuracy on another."""
    subset = select_split(dataset, split)
    preds, _ = predict_dataset(loaded, subset, device=device, progress=progress)
    return best_defect_threshold(subset, preds)


def calibrated(
    loaded: LoadedModel,
    dataset: DetectionDataset,
    eval_cfg: EvalConfig,
    *,
    nms: str | None,
    split: str,
    device: str = "auto",
    progress: bool = True,
) -> EvalConfig:
    """``eval_cfg`` with the defect threshold of :func:`calibrate_defect_threshold` on
    ``split`` with NMS ``nms`` (``None``: the model's own). Each NMS method scores on its own
    scale (WBF averages a cluster's scores, soft-NMS decays them), so a threshold chosen for
    one method misjudges another."""
    with nms_switched(loaded.model, nms):
        threshold = calibrate_defect_threshold(
            loaded, dataset, split=split, device=device, progress=progress
        )
    return dataclasses.replace(eval_cfg, defect_threshold=threshold)


def defective_images_only(preds: Predictions, threshold: float) -> Predictions:
    """The detections of the images whose best detection scores at least ``threshold``: a
    Tianchi submission (every image named in it counts as defective)."""
    if not len(preds):
        return preds
    ids, inverse = np.unique(preds.image_ids, return_inverse=True)
    best = np.full(len(ids), -np.inf, dtype=np.float32)
    np.maximum.at(best, inverse, preds.scores)
    return preds.select(best[inverse] >= threshold)


def _use_submission_score(
    summary: dict[str, Any], dataset: DetectionDataset, submission: Predictions
) -> None:
    """Replace the Tianchi keys of ``summary`` by the score of ``submission``."""
    tc = tianchi_score(dataset, submission)
    summary.update(
        tianchi_score=tc.score,
        acc=tc.acc,
        map_voc=tc.map,
        map_voc_per_iou={f"{t:g}": v for t, v in tc.map_per_iou.items()},
    )
    names = {c.id: c.name for c in dataset.categories}
    for cid, name in names.items():
        if name in summary["per_class"]:
            summary["per_class"][name]["voc_ap"] = tc.per_class.get(cid, 0.0)


def output_paths(out_dir: Path, split: str, nms: str) -> dict[str, Path]:
    """Where :func:`evaluate` writes its files for one split and NMS method."""
    stem = f"{split}_{nms}"
    return {
        "tianchi_submission": out_dir / f"submission_{stem}.json",
        "coco_results": out_dir / f"coco_results_{stem}.json",
        "metrics": out_dir / f"metrics_{stem}.json",
    }


def evaluate(
    loaded: LoadedModel,
    dataset: DetectionDataset,
    *,
    split: str | None = None,
    nms: str | None = None,
    eval_cfg: EvalConfig | None = None,
    out_dir: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    capture: EvalCapture | None = None,
) -> dict[str, Any]:
    """Metrics of a model on one split with one NMS method.

    COCO AP (and mask metrics) are computed from every detection scoring at least
    ``eval.score_threshold``; the Tianchi score, ACC and VOC mAP from the submission, which
    keeps the images whose best detection reaches ``eval.defect_threshold``.

    Args:
        split: a split name or ``"all"``; default the run's ``data.val_split``.
        nms: NMS method; default ``eval.nms`` of the run, else the model's own.
        eval_cfg: score threshold, batch size, warm-up; default the run's.
        out_dir: write ``submission_<split>_<nms>.json`` (Tianchi), ``coco_results_...``
            and ``metrics_...`` there.
        capture: filled with the split, the predictions and per-image latencies.

    The model's own NMS method is restored afterwards.

    Returns:
        :func:`~fabricdet.metrics.evaluate_predictions`' keys (``coco_ap``, ``coco_ap50``,
        ``coco_ap75``, ``tianchi_score``, ``acc``, ``map_voc``, ...) plus ``ms_per_image``,
        ``nms``, ``split``, ``score_threshold``, ``defect_threshold``, ``model``, ``step``
        and, with ``out_dir``, ``files``.
    """
    cfg = eval_cfg or loaded.config.eval
    split = split or loaded.config.data.val_split
    nms = nms or cfg.nms or loaded.config.model.nms
    subset = select_split(dataset, split)
    latencies: list[float] = []
    with nms_switched(loaded.model, nms):
        preds, ms = predict_dataset(
            loaded,
            subset,
            eval_cfg=cfg,
            device=device,
            progress=progress,
            latencies_ms=latencies,
        )
    if capture is not None:
        capture.dataset, capture.predictions, capture.latencies_ms = subset, preds, latencies
        capture.device = str(resolve_device(device))
    # COCO AP from every detection; the Tianchi numbers from the submission actually written.
    summary = evaluate_predictions(subset, preds, score_threshold=cfg.defect_threshold)
    submission = defective_images_only(preds, cfg.defect_threshold)
    _use_submission_score(summary, subset, submission)
    summary.update(
        ms_per_image=ms if math.isfinite(ms) else None,
        nms=nms,
        split=split,
        score_threshold=cfg.score_threshold,
        defect_threshold=cfg.defect_threshold,
        model=str(loaded.path),
        step=loaded.step,
    )
    if out_dir is not None:
        paths = output_paths(Path(out_dir), split, nms)
        write_tianchi_submission(submission, subset, paths["tianchi_submission"])
        write_coco_results(preds, paths["coco_results"])
        summary["files"] = {k: str(v) for k, v in paths.items()}
        atomic_write_json(paths["metrics"], summary)
    return summary


def evaluate_all_nms(
    loaded: LoadedModel,
    dataset: DetectionDataset,
    *,
    methods: Sequence[str] = NMS_METHODS,
    split: str | None = None,
    eval_cfg: EvalConfig | None = None,
    out_dir: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    captures: dict[str, EvalCapture] | None = None,
    calibrate_on: str | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` once per NMS method on the same model and split.

    The model runs again for each method (the dense outputs are not cached): simple, and the
    latency of each method then includes everything it costs. ``captures``, if given, gets
    ``{method: EvalCapture}``. With ``calibrate_on`` (a split), each method's defect threshold
    is the one most accurate on that split with that method (:func:`calibrated`).

    Returns:
        ``{method: summary}`` in the order of ``methods``.
    """
    cfg = eval_cfg or loaded.config.eval
    results = {}
    for m in methods:
        capture = EvalCapture() if captures is not None else None
        method_cfg = cfg
        if calibrate_on is not None:
            method_cfg = calibrated(
                loaded, dataset, cfg, nms=m, split=calibrate_on, device=device, progress=progress
            )
        results[m] = evaluate(
            loaded,
            dataset,
            split=split,
            nms=m,
            eval_cfg=method_cfg,
            out_dir=out_dir,
            device=device,
            progress=progress,
            capture=capture,
        )
        if captures is not None and capture is not None:
            captures[m] = capture
    return results
