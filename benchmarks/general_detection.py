"""General (non-fabric) detection: our detector with greedy NMS vs SinkhornNMS off fabric.

Without COCO here, it generates the general detection set of :mod:`fabricdet.data.general`
(seven object categories composited in crowded, overlapping same-class groups onto the
photographs scikit-image ships; COCO format, exact masks), trains our detector from scratch
with the ``default`` preset (steps and image size cut to fit about ten minutes on one CPU
thread), and evaluates it on the test split with every NMS method, each with its own kept boxes
and with medoid boxes. Reported per row: COCO AP, AP50, AP75, and COCO AP / AP50 on the
``crowded`` subset: the test images holding two same-class objects whose boxes overlap with
IoU above ``--crowd-iou`` (0.3), where NMS must keep touching neighbours that a
duplicate-suppressing threshold would merge.

``--data PATH`` runs the same on any dataset ``load_dataset`` reads (a COCO JSON file or a
folder holding ``annotations.json``, or Tianchi / YOLO): images without a split get one.
Every stage is reused when found in ``--out``: the generated set, the trained model.

    python benchmarks/general_detection.py --out runs/general [--data PATH] [--steps 350]
        [--num-images 600] [--size 320x320] [--max-size 320] [--crowd-iou 0.3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_iou

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats import load_dataset
from fabricdet.data.formats.detect import COCO_IN_FOLDER
from fabricdet.data.general import generate_general
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.data import with_splits
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.train import CONFIG_FILE, MODEL_FILE, train
from fabricdet.ops.nms import NMS_METHODS
from nms_ablation import settings  # benchmarks/ is a folder of scripts, not a package

COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "crowded_ap", "crowded_ap50", "ms_per_image")


def crowded(record: ImageRecord, iou: float) -> bool:
    """Whether two objects of one class have boxes overlapping with IoU above ``iou``."""
    by_class: dict[int, list[tuple[float, float, float, float]]] = {}
    for inst in record.instances:
        by_class.setdefault(inst.category_id, []).append(inst.box)
    for boxes in by_class.values():
        if len(boxes) < 2:
            continue
        ious = box_iou(torch.tensor(boxes), torch.tensor(boxes))
        ious.fill_diagonal_(0.0)
        if bool((ious > iou).any()):
            return True
    return False


def crowded_subset(dataset: DetectionDataset, split: str, iou: float) -> DetectionDataset:
    """The images of ``split`` that are :func:`crowded` (same root, categories and splits)."""
    images = [r for r in dataset.images if r.split == split and crowded(r, iou)]
    return DetectionDataset(dataset.root, dataset.categories, images)


def get_dataset(args: argparse.Namespace) -> DetectionDataset:
    """The user's dataset (``--data``), else the generated set in ``OUT/data`` (made once)."""
    if args.data is not None:
        return with_splits(load_dataset(args.data))
    data_dir = args.out / "data"
    if (data_dir / COCO_IN_FOLDER).is_file():
        return load_dataset(data_dir)
    w, h = (int(v) for v in args.size.lower().split("x"))
    return generate_general(data_dir, args.num_images, seed=args.seed, size=(w, h), progress=True)


def get_model(args: argparse.Namespace, dataset: DetectionDataset) -> Path:
    """Train (or resume, or reuse) the detector in ``OUT/run``; the path of ``model.pt``."""
    run_dir = args.out / "run"
    if not (run_dir / MODEL_FILE).is_file():
        resume = (run_dir / CONFIG_FILE).is_file()
        cfg = None
        if not resume:
            cfg = apply_overrides(
                preset("default"),
                [
                    f"train.max_steps={args.steps}",
                    f"train.seed={args.seed}",
                    f"data.max_size={args.max_size}",
                    # One thread in all: a loader worker process would compete for it.
                    "data.num_workers=0",
                    "train.tensorboard=false",
                ],
            )
        start = time.perf_counter()
        train(cfg, dataset, run_dir, resume=resume, progress=True)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    return run_dir / MODEL_FILE


def scores(loaded: Any, full: DetectionDataset, crowd: DetectionDataset, split: str) -> dict:
    """``{row: metrics}`` on the split and its crowded subset, for every NMS method with its own
    kept boxes and with medoid boxes (``model.medoid_boxes``)."""
    rows: dict[str, dict[str, float]] = {}
    for method, medoid in itertools.product(NMS_METHODS, (False, True)):
        with settings(loaded.model.cfg, {"medoid_boxes": medoid}):
            res = evaluate(loaded, full, split=split, nms=method, progress=False)
            cr = None
            if crowd.images:
                cr = evaluate(loaded, crowd, split=split, nms=method, progress=False)
        row = {c: float(res[c]) for c in ("coco_ap", "coco_ap50", "coco_ap75", "ms_per_image")}
        if cr is not None:
            row["crowded_ap"], row["crowded_ap50"] = float(cr["coco_ap"]), float(cr["coco_ap50"])
        else:
            row["crowded_ap"] = row["crowded_ap50"] = float("nan")
        name = method + (", medoid boxes" if medoid else "")
        rows[name] = row
        print(f"{name}: {row}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/general"))
    parser.add_argument("--data", type=Path, default=None, help="any dataset load_dataset reads")
    parser.add_argument("--split", default="test", help="split to score (test)")
    parser.add_argument("--steps", type=int, default=350, help="training steps (batch 4)")
    parser.add_argument("--max-size", type=int, default=320, help="long side fed to the model")
    parser.add_argument("--num-images", type=int, default=600)
    parser.add_argument("--size", default="320x320")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crowd-iou", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = get_dataset(args)
    crowd = crowded_subset(dataset, args.split, args.crowd_iou)
    loaded = load_model(get_model(args, dataset), device="cpu")
    rows = scores(loaded, dataset, crowd, args.split)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    n_split = sum(r.split == args.split for r in dataset.images)
    n_obj = sum(len(r.instances) for r in dataset.images if r.split == args.split)
    print(
        f"\n{dataset.root}: {dataset.num_classes} categories; {args.split} split {n_split} "
        f"images ({n_obj} objects), crowded subset {len(crowd.images)} images "
        f"(same-class box IoU > {args.crowd_iou}); model {loaded.path} at step {loaded.step}"
    )
    print("| NMS | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for method, row in rows.items():
        cells = [f"{row[c]:.1f}" if c == "ms_per_image" else f"{row[c]:.3f}" for c in COLUMNS]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
