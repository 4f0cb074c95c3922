"""``fabricdet train DATA --out RUN [--minutes M] [--resume] [--preset NAME] [key=value ...]``.

DATA is any dataset :func:`~fabricdet.data.formats.load_dataset` reads (Tianchi folder, COCO
JSON, YOLO folder); images without a split get one (deterministic hash). RUN receives
``config.yaml``, ``checkpoint.pt``, ``model.pt`` and ``tb/``. Overrides are dotted config keys
(``train.max_steps=200 model.nms=greedy model.strides=[8,16,32]``). Under ``torchrun`` every
process runs this command; rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fabricdet.data.formats import load_dataset_with_report
from fabricdet.engine.config import PRESETS, preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.train import train


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset: Tianchi folder, COCO JSON, YOLO folder")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. train.max_steps=200 model.nms=greedy",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--minutes", type=float, default=None, help="stop after M minutes")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="starting config (default: 'default', the CPU demo size; with --resume: the run's)",
    )
    parser.add_argument("--lenient", action="store_true", help="skip bad dataset records")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    # Overrides may come before or after the options ("DATA --out RUN k=v"): plain
    # parse_args stops filling a '*' positional at the first option.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    main_rank = int(os.environ.get("RANK", "0")) == 0
    cfg = None  # with --resume alone: the run's own config
    if not args.resume or args.preset is not None or args.overrides:
        # Before the dataset: a typo in an override fails at once, not after a long read.
        cfg = apply_overrides(preset(args.preset or "default"), args.overrides)
    dataset, report = load_dataset_with_report(args.data, strict=not args.lenient)
    if not report.clean and main_rank:
        print(report.format(), file=sys.stderr)
    model_path = train(
        cfg,
        dataset,
        args.out,
        minutes=args.minutes,
        resume=args.resume,
        progress=not args.quiet,
    )
    if main_rank:
        print(f"model: {model_path}")
    return 0
