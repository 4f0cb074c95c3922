"""Whole frames for a model trained on crops: the frame shrunk to the model's input, or tiles.

A model trained at the camera's scale on crops (the demo's: 320x128 frames, ``data.max_size``
320) sees a full 2446x1000 frame shrunk 7.6x by ``fabricdet detect``; ``fabricdet detect
--tile 320`` gives it 320 px tiles at its own scale and joins the defects across the seams.
This scores both on synthetic full-size frames (rendered once into ``--data``; every image is
scored, none was seen in training): COCO AP, AP50, AP75, class-agnostic AP50 (found, whatever
the class), the Tianchi score, and milliseconds per image (reading the file included).
A last row, an oracle for diagnosis, scores the tiles' detections that lie near an object
(their box meets one enlarged by ``--near`` pixels): what the tiles would score without the
false alarms on clean cloth, which a frame holds many times more of per object than a crop.

    python benchmarks/tiled_detect.py MODEL [--data runs/full-frames] [--num-images 30]
        [--size 2446x1000] [--tile 320] [--overlap 64] [--score-threshold 0.01] [--near 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from fabricdet.data.dataset import ImageRecord
from fabricdet.data.synth import load_or_generate
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.predict import detect
from fabricdet.metrics.evaluate import evaluate_predictions
from fabricdet.metrics.predictions import Predictions

COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "coco_ap50_agnostic", "tianchi_score")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=Path("runs/full-frames"))
    parser.add_argument("--num-images", type=int, default=30)
    parser.add_argument("--size", default="2446x1000")
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--score-threshold", type=float, default=0.01)
    parser.add_argument("--near", type=float, default=32.0, help="oracle row: pixels")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    dataset = load_or_generate(args.data, args.num_images, 1, (w, h))
    files = [dataset.image_path(r) for r in dataset.images]
    ids = [r.image_id for r in dataset.images]
    loaded = load_model(args.model)
    print(f"{args.model}: input {loaded.config.data.max_size} px; {len(files)} frames of {w}x{h}")
    print("| frames as | " + " | ".join(COLUMNS) + " | ms/image |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    modes = {"shrunk to the input": None, f"{args.tile} px tiles": args.tile}
    for name, tile in modes.items():
        start = time.perf_counter()
        found = detect(
            loaded,
            files,
            score_threshold=args.score_threshold,
            progress=False,
            tile=tile,
            overlap=args.overlap,
        )
        ms = 1000 * (time.perf_counter() - start) / len(files)
        outputs = [{"boxes": d.boxes, "scores": d.scores, "labels": d.labels} for d in found]
        rows = {name: outputs}
        if tile is not None:
            pairs = zip(outputs, dataset.images, strict=True)
            near = [near_objects(o, r, args.near) for o, r in pairs]
            rows[f"{name}, only near an object (oracle)"] = near
        for row, row_outputs in rows.items():
            preds = Predictions.from_model_outputs(dataset, ids, row_outputs)
            summary = evaluate_predictions(dataset, preds)
            cells = " | ".join(f"{summary[c]:.3f}" for c in COLUMNS)
            print(f"| {row} | {cells} | {ms:.0f} |", flush=True)


def near_objects(output: dict[str, Any], record: ImageRecord, margin: float) -> dict[str, Any]:
    """``output`` without the detections whose box misses every object's box enlarged by
    ``margin`` pixels (of any class)."""
    boxes = np.asarray(output["boxes"], dtype=np.float64).reshape(-1, 4)
    objects = np.array([i.box for i in record.instances], dtype=np.float64).reshape(-1, 4)
    objects += np.array([-margin, -margin, margin, margin])
    meets = (
        (boxes[:, None, 0] <= objects[None, :, 2])
        & (boxes[:, None, 2] >= objects[None, :, 0])
        & (boxes[:, None, 1] <= objects[None, :, 3])
        & (boxes[:, None, 3] >= objects[None, :, 1])
    ).any(1)
    return {k: np.asarray(v)[meets] for k, v in output.items()}


if __name__ == "__main__":
    main()
