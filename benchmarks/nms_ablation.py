"""Ablation: does training end to end through SinkhornNMS beat the classic NMS variants?

For each seed it trains the same detector twice on the synthetic benchmark:
(a) ``greedy-trained``: dense losses only (no set loss), greedy NMS at inference;
(b) ``sinkhorn-trained``: dense losses plus the set loss through SinkhornNMS.
Each model is evaluated on the test split with every NMS method, each with the method's own
kept boxes and with each kept detection's cluster medoid as its box (``model.medoid_boxes``,
:mod:`fabricdet.ops.medoid`); the SinkhornNMS-trained model also with SinkhornNMS' spatial,
appearance and quality terms switched off in turn, with and without box fusion (at
inference) and with training's appearance capacities; a model with the box-quality head
(``--set model.box_quality=true``) also without its rescoring. Reported per row: COCO AP,
AP50, AP75, the Tianchi score, and COCO AP on the ``adjacent`` subset (the test images holding
two defects whose boxes overlap or lie within ``--gap`` pixels: parallel broken threads and
other neighbours, where greedy NMS merges).
Mean and spread (sample standard deviation) over the seeds.

Every stage resumes: a dataset or a finished run is reused, an interrupted run continues.
``--set KEY=VALUE ...`` adds config overrides to both arms (a finished run keeps the config it
was trained with: use a new ``--out`` when changing them); ``--arms`` trains and scores only
the arms named (a probe of one formulation against an earlier ablation's other arm).
``--minutes`` gives each training run a time budget (its schedule re-plans to end on time
when ``--steps`` would not fit); ``--jobs N`` trains and scores N runs at once, each in its
own process (a GPU that one small run leaves mostly idle; ``os.cpu_count() / N`` threads each).

    python benchmarks/nms_ablation.py --out runs/ablation [--seeds 0 1 2] [--steps 600]
        [--minutes M] [--jobs N] [--num-images 1000] [--size 640x256] [--gap 8]
        [--set KEY=VALUE ...] [--arms ARM ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.data.synth import load_or_generate
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.train import CONFIG_FILE, MODEL_FILE, train
from fabricdet.ops.nms import NMS_METHODS

ARMS: dict[str, list[str]] = {
    "greedy-trained": ["model.set_loss=false", "model.nms=greedy"],
    "sinkhorn-trained": ["model.set_loss=true", "model.nms=sinkhorn"],
}
#: SinkhornNMS variants at inference: row name -> (config field, value). Each cost term
#: switched off in turn, the kept seeds' own boxes or the fused ones (one of the two is the
#: model's own setting: fused before ``fuse_boxes`` defaulted to false), and slot capacities
#: of the look-alike mass around each slot (training's) instead of the class mass.
VARIANTS: dict[str, tuple[str, float | bool]] = {
    "sinkhorn, no spatial": ("spatial_weight", 0.0),
    "sinkhorn, no appearance": ("feature_weight", 0.0),
    "sinkhorn, no quality": ("quality_weight", 0.0),
    "sinkhorn, no box fusion": ("fuse_boxes", False),
    "sinkhorn, box fusion": ("fuse_boxes", True),
    "sinkhorn, appearance capacities": ("appearance_capacity", True),
}
COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "tianchi_score", "adjacent_ap")


def adjacent_objects(boxes: Tensor, gap: float) -> Tensor:
    """Objects overlapping or within ``gap`` pixels of another one; ``boxes (Tensor[M, 4])``
    xyxy -> ``Tensor[M] bool``."""
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    near = ((lo - hi) <= gap).all(-1)
    near.fill_diagonal_(False)
    return near.any(1)


def adjacent(a: ImageRecord, gap: float) -> bool:
    """Whether two of the image's objects overlap or lie within ``gap`` pixels."""
    boxes = torch.tensor([i.box for i in a.instances], dtype=torch.float64).reshape(-1, 4)
    return bool(adjacent_objects(boxes, gap).any())


def adjacent_subset(dataset: DetectionDataset, split: str, gap: float) -> DetectionDataset:
    images = [r for r in dataset.images if r.split == split and adjacent(r, gap)]
    return DetectionDataset(dataset.root, dataset.categories, images)


def _scores(loaded: Any, full: DetectionDataset, adj: DetectionDataset, nms: str) -> dict:
    res = evaluate(loaded, full, split="test", nms=nms, progress=False)
    row = {c: res[c] for c in COLUMNS[:-1]}
    row["adjacent_ap"] = evaluate(loaded, adj, split="test", nms=nms, progress=False)["coco_ap"]
    return row


@dataclass(frozen=True)
class Plan:
    """What every run of the ablation shares."""

    dataset: DetectionDataset
    adjacent: DetectionDataset
    out: Path
    steps: int
    minutes: float | None
    extra: list[str]
    threads: int


def row_specs(arm: str, rescores: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{row name: (NMS method, model config settings)}`` of one arm; a setting's key is a
    field of the model config, dotted for its ``sinkhorn`` section."""
    kept: dict[str, Any] = {"medoid_boxes": False}
    specs = {}
    for method in NMS_METHODS:
        specs[f"{arm} / {method}"] = (method, kept)
        specs[f"{arm} / {method}, medoid boxes"] = (method, {"medoid_boxes": True})
    if arm == "sinkhorn-trained":
        for name, (field, value) in VARIANTS.items():
            specs[f"{arm} / {name}"] = ("sinkhorn", {**kept, f"sinkhorn.{field}": value})
    if rescores:  # the same model without its rescoring
        for method in ("greedy", "sinkhorn"):
            no_rescoring = {**kept, "box_quality_rescore": False}
            specs[f"{arm} / {method}, no box rescoring"] = (method, no_rescoring)
    return specs


@contextmanager
def settings(cfg: Any, values: dict[str, Any]) -> Iterator[None]:
    """``cfg`` with ``values`` set (keys dotted into its sections), restored on exit."""
    before = {}
    for key, value in values.items():
        *path, leaf = key.split(".")
        section = reduce(getattr, path, cfg)
        before[key] = (section, leaf, getattr(section, leaf))
        setattr(section, leaf, value)
    try:
        yield
    finally:
        for section, leaf, value in before.values():
            setattr(section, leaf, value)


def run_arm(plan: Plan, seed: int, arm: str) -> dict[str, dict[str, float]]:
    """``{row name: metrics}`` of one arm of one seed, training it first if needed; cached in
    ``out/<arm>-<seed>/scores.json`` (rows missing from the cache are scored and added)."""
    if plan.threads:
        torch.set_num_threads(plan.threads)
    run_dir = plan.out / f"{arm}-{seed}"
    cache = run_dir / "scores.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if not (run_dir / MODEL_FILE).is_file():
        resume = (run_dir / CONFIG_FILE).is_file()
        cfg = None
        if not resume:
            schedule = [f"train.seed={seed}", f"train.max_steps={plan.steps}"]
            cfg = apply_overrides(preset("default"), [*ARMS[arm], *schedule, *plan.extra])
        train(cfg, plan.dataset, run_dir, minutes=plan.minutes, resume=resume, progress=False)
    loaded = load_model(run_dir / MODEL_FILE)
    print(f"seed {seed} {arm}: trained {loaded.step} steps", flush=True)
    rows: dict[str, dict[str, float]] = {}
    for name, (method, values) in row_specs(arm, loaded.model.rescores).items():
        if name not in cached:
            with settings(loaded.model.cfg, values):
                cached[name] = _scores(loaded, plan.dataset, plan.adjacent, method)
            print(f"seed {seed} {name}: {cached[name]}", flush=True)
        rows[name] = cached[name]
    atomic_write_json(cache, cached)
    return rows


def run_all(plan: Plan, seeds: list[int], arms: list[str], jobs: int) -> list[dict]:
    """Per seed, ``{row name: metrics}`` over the arms; ``out/seed<k>.json`` (an earlier
    ablation's cache) is read as it is."""
    cached = {s: plan.out / f"seed{s}.json" for s in seeds}
    todo = [(s, arm) for s in seeds if not cached[s].is_file() for arm in arms]
    if jobs > 1:
        # spawn: each process initialises its own CUDA context and loaders
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            seed_of, arm_of = [s for s, _ in todo], [arm for _, arm in todo]
            done = list(pool.map(run_arm, [plan] * len(todo), seed_of, arm_of))
    else:
        done = [run_arm(plan, s, arm) for s, arm in todo]
    per_seed: dict[int, dict] = {s: {} for s in seeds}
    for (s, _), rows in zip(todo, done, strict=True):
        per_seed[s].update(rows)
    for s in seeds:
        if cached[s].is_file():
            per_seed[s] = json.loads(cached[s].read_text())
    return [per_seed[s] for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600, help="training steps per run")
    parser.add_argument("--minutes", type=float, help="training-time budget per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--size", default="640x256")
    parser.add_argument("--gap", type=float, default=8.0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for both arms")  # fmt: skip
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    dataset = load_or_generate(args.out / "data", args.num_images, 0, (w, h))
    adj = adjacent_subset(dataset, "test", args.gap)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    plan = Plan(dataset, adj, args.out, args.steps, args.minutes, args.set, threads)
    per_seed = run_all(plan, args.seeds, args.arms, args.jobs)
    n_test = sum(r.split == "test" for r in dataset.images)
    print(f"\n{len(args.seeds)} seeds, {args.steps} steps each; test split {n_test} images, "
          f"adjacent subset {len(adj.images)} images")  # fmt: skip
    print("| model / NMS | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in per_seed[0]:
        cells = []
        for c in COLUMNS:
            vals = [float(s[name][c] or 0.0) for s in per_seed]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
