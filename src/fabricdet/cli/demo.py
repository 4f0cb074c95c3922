"""``fabricdet demo [--out DIR]``: the whole pipeline on the bundled synthetic benchmark.

Generates a synthetic Tianchi-layout dataset, trains the default model through SinkhornNMS,
evaluates every NMS method on the test split and writes ``DIR/model.pt`` and
``DIR/report.html``. Rerunning resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fabricdet.cli.synth import parse_size
from fabricdet.engine.demo import DEMO_MINUTES, DEMO_SIZE, run_demo


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("fabricdet-demo"), help="output folder")
    parser.add_argument("--num-images", type=int, default=1000, help="synthetic images")
    w, h = DEMO_SIZE
    parser.add_argument(
        "--size", type=parse_size, default=DEMO_SIZE, help=f"image size WxH ({w}x{h}, native scale)"
    )
    parser.add_argument(
        "--minutes", type=float, default=DEMO_MINUTES,
        help=f"time budget of the whole job: data, training, evaluation ({DEMO_MINUTES:g})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    results = run_demo(
        args.out, num_images=args.num_images, size=args.size, minutes=args.minutes, seed=args.seed,
        progress=not args.quiet,
    )  # fmt: skip
    table = {
        m: {k: r.get(k) for k in ("coco_ap", "coco_ap75", "tianchi_score")}
        for m, r in results.items()
    }
    print(json.dumps(table, indent=1))
    print(f"report: {args.out / 'report.html'}  model: {args.out / 'model.pt'}")
    return 0
