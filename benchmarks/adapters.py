"""torchvision detectors with their native NMS vs with SinkhornNMS, trained from scratch.

For each model (FCOS, RetinaNet, Faster R-CNN, Mask R-CNN; the small from-scratch hosts of
:func:`fabricdet.models.adapters.tiny_torchvision_detector`) it trains, on the synthetic
fabric benchmark and with the same budget (steps, batch, schedule, seed):

- ``native``: the host with its own losses;
- ``sinkhorn``: the host wrapped by ``with_sinkhorn_nms``: its own losses plus the set loss
  through SinkhornNMS.

Each trained model is evaluated on the test split with torchvision's own NMS (the unmodified
host) and with SinkhornNMS (the adapter's hard decode; with its fused boxes and with the
kept candidates' own boxes, the adapters' default): COCO AP, AP50, AP75 (mask AP for Mask
R-CNN), the latency per image (batch 1, one thread, model call + mapping back) and the
training wall time per step. With ``--stages`` Faster R-CNN is also trained and evaluated with
SinkhornNMS at the RPN, at the box head (the default) and at both (``--stages rpn``: that one
only; ``--archs`` with no names trains no other arm). By default every defect is one class
``defect`` (``--classes all``: the 20 categories, which a small budget cannot learn). Every
stage resumes: a finished run is reused; ``--arms`` trains only the arms named, so that two
processes can train the two arms side by side into one ``--out`` (a last run without it prints
the whole table).

    python benchmarks/adapters.py --out runs/adapters [--archs fcos retinanet fasterrcnn
        maskrcnn] [--steps 200] [--num-images 300] [--size 320x128] [--batch-size 4]
        [--seed 0] [--stages [rpn box both]] [--threads 1] [--classes defect|all]
        [--arms native sinkhorn] [--option KEY=VALUE ...]

``--option`` sets :class:`fabricdet.models.adapters.AdapterOptions` fields of every run (e.g.
``--option keep_weight=0`` trains through SinkhornNMS with the set loss' box term only); such
runs are cached under names that carry the options.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fabricdet.data.categories import Category
from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.synth import load_or_generate
from fabricdet.engine.checkpoint import MODEL_FILE, load_model
from fabricdet.engine.config import ConfigError, preset
from fabricdet.engine.config_io import apply_overrides, from_dict
from fabricdet.engine.evaluate import evaluate
from fabricdet.engine.train import train
from fabricdet.errors import FabricdetError
from fabricdet.models.adapters import (
    ARCHS,
    STAGES,
    AdapterOptions,
    tiny_torchvision_detector,
    with_sinkhorn_nms,
)
from fabricdet.models.config import ModelConfig
from fabricdet.ops import NMS_METHODS

TWO_STAGE = ("fasterrcnn", "maskrcnn")
ARMS = ("native", "sinkhorn")
COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "mask_ap", "ms_per_image")
#: Cache key of the training wall time per step (absent from runs trained before it existed).
STEP_TIME = "train_s_per_step"
#: Evaluations of each trained model: row -> (NMS method, the adapter's fuse_boxes).
#: ``sinkhorn`` outputs SinkhornNMS' fused boxes (the adapters' default when the first runs
#: were cached under that name); ``sinkhorn-seeds`` each kept candidate's own box, as
#: torchvision's NMS does and the adapters now do by default.
EVALS: dict[str, tuple[str, bool]] = {
    "greedy": ("greedy", True),
    "sinkhorn": ("sinkhorn", True),
    "sinkhorn-seeds": ("sinkhorn", False),
}
ROW_NAMES = {
    "greedy": "native",
    "sinkhorn": "SinkhornNMS",
    "sinkhorn-seeds": "SinkhornNMS, seeds' boxes",
}


class BenchDetector(nn.Module):
    """A torchvision host and its adapter behind fabricdet's model contract.

    Labels are 0-based both ways (the R-CNNs reserve 0 for the background, so they are shifted
    by one in and out); ``nms_method="greedy"`` runs the unmodified host, any other method the
    adapter; training runs the adapter (set loss) or the host alone (``train_through=False``).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        size: tuple[int, int],
        train_through: bool,
        stage: str,
        options: dict[str, Any],
    ) -> None:
        super().__init__()
        w, h = size
        thresholds: dict[str, Any] = (
            {} if arch in TWO_STAGE else {"score_thresh": 0.05, "detections_per_img": 100}
        )
        host = tiny_torchvision_detector(
            arch, num_classes, min_size=min(w, h), max_size=max(w, h), **thresholds
        )
        self.adapter = with_sinkhorn_nms(
            host, **{**options, "train_through": train_through, "stage": stage}
        )
        self.train_through = train_through
        self.offset = 1 if arch in TWO_STAGE else 0
        self._nms_method = "greedy"

    @property
    def nms_method(self) -> str:
        return self._nms_method

    @nms_method.setter
    def nms_method(self, method: str) -> None:
        if method not in NMS_METHODS:
            raise FabricdetError(f"unknown NMS method {method!r}")
        self._nms_method = method

    def set_epoch_progress(self, progress: float) -> None:
        self.adapter.set_epoch_progress(progress)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        host = self.adapter.host
        if self.training:
            assert targets is not None
            shifted = [{**t, "labels": t["labels"] + self.offset} for t in targets]
            return (self.adapter if self.train_through else host)(images, shifted)
        if self._nms_method == "greedy":
            outputs = host(images)
        else:
            self.adapter.nms_method = self._nms_method
            outputs = self.adapter(images)
        return [{**o, "labels": o["labels"] - self.offset} for o in outputs]


class Factory:
    """``factory(model_config, num_classes)`` for ``fabricdet.engine.train`` (its model config
    is FabricDetector's and unused here)."""

    def __init__(
        self,
        arch: str,
        size: tuple[int, int],
        train_through: bool,
        stage: str,
        options: dict[str, Any],
    ) -> None:
        self.args = (arch, size, train_through, stage, options)
        self.__qualname__ = f"Factory({arch}, through={train_through}, stage={stage}, {options})"

    def __call__(self, _cfg: ModelConfig, num_classes: int) -> BenchDetector:
        return BenchDetector(self.args[0], num_classes, *self.args[1:])


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> the named AdapterOptions fields, typed and validated as a
    config file's values are."""
    raw = dict(item.partition("=")[::2] for item in items)
    fixed = {"train_through", "stage"} & raw.keys()
    try:
        if fixed:
            raise ConfigError(f"{', '.join(sorted(fixed))}: set by the arm and --stages")
        options = from_dict(AdapterOptions, raw)
    except (ConfigError, ValueError) as err:
        raise SystemExit(f"--option: {err}") from None
    return {key: getattr(options, key) for key in raw}


def one_class(dataset: DetectionDataset) -> DetectionDataset:
    """The dataset with every defect in one category ``defect`` (id 1): with a small budget,
    20 long-tailed classes leave most of them unlearnt and AP near 0 whatever the NMS."""
    images = [
        replace(r, instances=[replace(i, category_id=1) for i in r.instances])
        for r in dataset.images
    ]
    return DetectionDataset(dataset.root, (Category(1, "defect", ()),), images)


def run_config(arch: str, args: argparse.Namespace) -> Any:
    w, _ = (int(v) for v in args.size.split("x"))
    overrides = [
        f"data.max_size={w}",  # the rendered size: nothing is resized
        f"data.masks={'full' if arch == 'maskrcnn' else 'none'}",
        "data.num_workers=0",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.lr={args.lr}",
        f"train.warmup_steps={max(1, args.steps // 10)}",
        f"train.seed={args.seed}",
        f"train.checkpoint_every={args.steps}",
        "train.amp=false",
        "train.tensorboard=false",
        "train.device=cpu",
        "eval.batch_size=1",
        "eval.warmup_iters=2",
    ]
    return apply_overrides(preset("default"), overrides)


def train_and_score(
    dataset: DetectionDataset, arch: str, arm: str, stage: str, args: argparse.Namespace
) -> dict[str, Any]:
    """``{row: metrics for row in EVALS, STEP_TIME: seconds}`` of one trained model; cached in
    ``out/<arch>-<arm>[-<stage>].json`` (a cache missing a row gets it evaluated)."""
    name = f"{arch}-{arm}" + (f"-{stage}" if arch in TWO_STAGE else "")
    name += "".join(f"-{k}={v}" for k, v in sorted(args.options.items()))
    cache = args.out / f"{name}.json"
    rows: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    if all(row in rows for row in EVALS):
        return rows
    size = tuple(int(v) for v in args.size.split("x"))
    factory = Factory(arch, size, arm == "sinkhorn", stage, args.options)  # type: ignore[arg-type]
    run_dir = args.out / name
    rows.setdefault(STEP_TIME, None)  # unknown when the model was trained earlier
    if not (run_dir / MODEL_FILE).is_file():
        start = time.perf_counter()
        train(run_config(arch, args), dataset, run_dir, model_factory=factory, progress=False)
        rows[STEP_TIME] = (time.perf_counter() - start) / args.steps
    loaded = load_model(run_dir / MODEL_FILE, factory=factory)
    adapter = loaded.model.adapter
    for row, (nms, fuse) in EVALS.items():
        if row in rows:
            continue
        adapter.options = replace(adapter.options, fuse_boxes=fuse)
        res = evaluate(loaded, dataset, split="test", nms=nms, device="cpu", progress=False)
        rows[row] = {c: res.get(c) for c in COLUMNS}
        print(f"{name} / {row}: {rows[row]}", flush=True)
    cache.write_text(json.dumps(rows, indent=1))
    return rows


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value < 0 else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/adapters"))
    parser.add_argument("--archs", nargs="*", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--num-images", type=int, default=300)
    parser.add_argument("--size", default="320x128", help="rendered image WxH")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stages", nargs="*", choices=STAGES, default=None,
        help="Faster R-CNN with SinkhornNMS at these stages (no names: all three)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--classes", choices=("defect", "all"), default="defect",
        help="one 'defect' class (default) or the 20 Tianchi categories",
    )  # fmt: skip
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.options = parse_options(args.option)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    dataset = load_or_generate(args.out / "data", args.num_images, 0, (w, h), progress=False)
    if args.classes == "defect":
        dataset = one_class(dataset)

    runs = [(arch, arm, "box") for arch in args.archs for arm in args.arms]
    stages = [] if args.stages is None else args.stages or list(STAGES)
    runs += [r for r in (("fasterrcnn", "sinkhorn", st) for st in stages) if r not in runs]
    results = [(run, train_and_score(dataset, *run, args)) for run in runs]

    n_test = sum(r.split == "test" for r in dataset.images)
    print(f"\n{args.steps} steps x batch {args.batch_size}, seed {args.seed}, {args.size} images, "
          f"classes: {args.classes}; test split {n_test} images; latency: batch 1, "
          f"{args.threads} thread(s); R-CNNs trained through SinkhornNMS at the stage named "
          "and evaluated with it there\n")  # fmt: skip
    print("| model | trained | s/step | NMS | AP | AP50 | AP75 | mask AP | ms/img |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (arch, arm, stage), rows in results:
        model = arch + (f" ({stage})" if arch in TWO_STAGE and arm == "sinkhorn" else "")
        trained = "host losses" if arm == "native" else "+ set loss through SinkhornNMS"
        for row in EVALS:
            m = rows[row]
            cells = [_cell(m[c]) for c in COLUMNS[:-1]] + [_cell(m["ms_per_image"], 1)]
            print(f"| {model} | {trained} | {_cell(rows.get(STEP_TIME), 2)} | {ROW_NAMES[row]} | "
                  + " | ".join(cells) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
