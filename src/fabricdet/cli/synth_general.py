"""``fabricdet synth-general OUT --num-images N [--size WxH] [--seed S]``: a general
(non-fabric) detection set in COCO format.

OUT gets ``images/*.jpg`` and ``annotations.json`` (COCO, exact RLE masks, a ``split`` per
image): seven object categories composited in crowded, overlapping groups onto the photographs
scikit-image ships (see :mod:`fabricdet.data.general`). ``fabricdet train OUT`` and
``fabricdet eval MODEL OUT`` read it like any COCO dataset. Same seed and size, same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fabricdet.cli.synth import parse_size, parse_splits
from fabricdet.data.general import DEFAULT_SIZE, generate_general


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created; must not hold a dataset)")
    parser.add_argument(
        "--num-images", type=int, required=True, metavar="N", help="number of images to render"
    )
    parser.add_argument(
        "--size",
        default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}",
        metavar="WxH",
        help=f"image width x height in pixels ({DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="dataset seed (0)")
    parser.add_argument(
        "--splits", default="0.8,0.1,0.1", metavar="T,V,E", help="train,val,test proportions"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    splits = parse_splits(args.splits)
    start = time.perf_counter()
    dataset = generate_general(
        args.out,
        args.num_images,
        seed=args.seed,
        size=size,
        splits=splits,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if not args.quiet:
        objects = sum(len(r.instances) for r in dataset.images)
        print(
            f"wrote {len(dataset.images)} images ({objects} objects, {dataset.num_classes} "
            f"categories) of {size[0]}x{size[1]} to {args.out} in "
            f"{time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
    return 0
