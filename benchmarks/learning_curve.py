"""Learning curve: validation accuracy of one training run at regular steps along its schedule.

Trains the default detector on a 640x256 synthetic benchmark (or any dataset given with
``--data``) for ``--steps`` steps, stopping every ``--every`` steps to score ``model.pt`` on the
validation split with each NMS method asked for, then resuming exactly where it stopped (the
same run, the same learning-rate schedule: stopping does not change the trajectory). One row
per stop: steps, training minutes so far, COCO AP, AP50, AP75 and the Tianchi score, printed
and appended to ``OUT/curve.jsonl``. Rerunning continues an interrupted curve.

It answers how accuracy grows with training compute on this machine, i.e. what a longer
``--minutes`` budget would buy over the demo's.

    python benchmarks/learning_curve.py --out runs/curve [--steps 1600] [--every 400]
        [--data DIR] [key=value ...] [--nms greedy sinkhorn]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from fabricdet.data.formats import load_dataset
from fabricdet.data.synth import load_or_generate
from fabricdet.engine.checkpoint import load_checkpoint, load_model
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.train import CHECKPOINT_FILE, MODEL_FILE, train
from fabricdet.ops.nms import NMS_METHODS

COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "tianchi_score")


def _done_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _progress(run_dir: Path) -> tuple[int, float]:
    """Steps done and training minutes spent by the run in ``run_dir`` (0, 0 before it)."""
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return 0, 0.0
    ckpt = load_checkpoint(path)
    return int(ckpt["step"]), float(ckpt["scheduler"]["trained_s"]) / 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--data", type=Path, help="dataset (default: render 1000 640x256 frames into OUT/data)"
    )
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--every", type=int, default=400)
    # choices: an override after --nms would otherwise be read as a method name
    p.add_argument("--nms", nargs="+", default=["greedy", "sinkhorn"], choices=NMS_METHODS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("overrides", nargs="*", help="run config key=value overrides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is not None:
        dataset = load_dataset(args.data)
    else:  # the 640x256 set the README's figures were measured on
        dataset = load_or_generate(args.out / "data", 1000, 0, (640, 256), progress=False)
    run_dir = args.out / "run"
    curve = args.out / "curve.jsonl"
    rows = _done_rows(curve)
    for row in rows:
        print(json.dumps(row))
    cfg = apply_overrides(preset("default"), [f"train.max_steps={args.steps}", *args.overrides])
    scored = {(r["step"], r["nms"]) for r in rows}
    step, minutes = _progress(run_dir)
    if step == 0 and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    while True:
        # Score before training on, so a curve killed between the two loses no row; a run
        # killed mid-chunk resumes from a checkpoint newer than its model.pt, not scored.
        loaded = load_model(run_dir / MODEL_FILE) if step else None
        for nms in args.nms:
            if loaded is None or loaded.step != step or (step, nms) in scored:
                continue
            metrics = evaluate(loaded, dataset, split="val", nms=nms, progress=False)
            row = {"step": step, "train_min": round(minutes, 1), "nms": nms}
            row.update({c: round(float(metrics[c]), 4) for c in COLUMNS})
            print(json.dumps(row), flush=True)
            with curve.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if step >= args.steps:
            break
        target = min(args.steps, (step // args.every + 1) * args.every)
        train(
            None if step else cfg, dataset, run_dir, resume=step > 0,
            stop_after_steps=target - step, progress=False,
        )  # fmt: skip
        step, minutes = _progress(run_dir)


if __name__ == "__main__":
    main()
