"""``fabricdet synth OUT --num-images N [--seed S] [--size WxH]``: write a synthetic dataset.

OUT gets the Tianchi layout (``defect_Images/``, ``normal_Images/``,
``Annotations/anno_train.json``) plus ``Annotations/splits.json`` and COCO files with exact
RLE masks (``Annotations/instances_{train,val,test}.json``). Same seed and size, same bytes.

``fabricdet synth OUT --roll LENGTH_M [--size WxH] [--mm-per-px X[,Y]]`` writes a roll instead:
one long strip of fabric cut into consecutive WxH frames (``OUT/frames/``), defects crossing
frame boundaries, ground truth in roll coordinates (``OUT/roll.json``, metres along the roll;
see :mod:`fabricdet.data.synth.roll`).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from fabricdet.data.synth import DEFAULT_SIZE, SynthConfig, SynthError, generate_dataset

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"2446x1000"`` -> ``(2446, 1000)`` (width, height).

    Raises:
        SynthError: not of the form WxH with positive integers.
    """
    m = _SIZE.match(text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise SynthError(
            f"--size {text!r}: expected WxH with positive integer width and height, "
            "e.g. --size 2446x1000"
        )
    return int(m.group(1)), int(m.group(2))


def parse_splits(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> train/val/test proportions.

    Raises:
        SynthError: not three non-negative numbers with a positive sum.
    """
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise SynthError(
            f"--splits {text!r}: expected three non-negative proportions TRAIN,VAL,TEST, "
            "e.g. --splits 0.8,0.1,0.1"
        )
    return parts  # type: ignore[return-value]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created; must not hold a dataset)")
    parser.add_argument(
        "--num-images", type=int, default=None, metavar="N", help="number of images to render"
    )
    parser.add_argument(
        "--roll",
        type=float,
        default=None,
        metavar="LENGTH_M",
        help="write a roll of this many metres as consecutive frames instead of a dataset",
    )
    parser.add_argument(
        "--mm-per-px",
        default="0.2",
        metavar="X[,Y]",
        help="roll only: camera pitch across (and along) the roll, mm per pixel (0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="dataset seed (0)")
    parser.add_argument(
        "--size",
        default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}",
        metavar="WxH",
        help="image width x height in pixels (2446x1000, as Tianchi)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all CPU cores)"
    )
    parser.add_argument(
        "--defect-free-fraction",
        type=float,
        default=SynthConfig.defect_free_fraction,
        metavar="F",
        help="share of defect-free images (0.38, as Tianchi)",
    )
    parser.add_argument(
        "--twin-prob",
        type=float,
        default=SynthConfig.twin_prob,
        metavar="P",
        help="probability that a thread defect gets a parallel twin a few yarns away (0.35)",
    )
    parser.add_argument(
        "--splits", default="0.8,0.1,0.1", metavar="T,V,E", help="train,val,test proportions"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def parse_pitch(text: str) -> tuple[float, float]:
    """``"0.2"`` -> ``(0.2, 0.2)``; ``"0.1,0.25"`` -> ``(0.1, 0.25)`` (across, along).

    Raises:
        SynthError: not one or two positive numbers.
    """
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2) or not all(p > 0 and p != float("inf") for p in parts):
        raise SynthError(
            f"--mm-per-px {text!r}: expected one or two positive numbers X[,Y] (mm per pixel "
            "across and along the roll), e.g. --mm-per-px 0.2 or --mm-per-px 0.1,0.25"
        )
    return (parts[0], parts[-1])


def _run_roll(args: argparse.Namespace, size: tuple[int, int]) -> int:
    from fabricdet.data.synth.roll import generate_roll

    start = time.perf_counter()
    truth = generate_roll(
        args.out,
        args.roll,
        seed=args.seed,
        frame_size=size,
        mm_per_px=parse_pitch(args.mm_per_px),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(
            f"wrote a {truth.length_m:.2f} m x {truth.width_m:.2f} m roll: {truth.num_frames} "
            f"frames of {size[0]}x{size[1]}, {len(truth.instances)} defects, to {args.out} in "
            f"{time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
    return 0


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    if args.roll is not None:
        return _run_roll(args, size)
    if args.num_images is None:
        raise SynthError("--num-images N is required (or --roll LENGTH_M for a roll of frames)")
    splits = parse_splits(args.splits)
    if args.num_images < 1:
        raise SynthError(f"--num-images {args.num_images}: need at least 1 image")
    if args.workers is not None and args.workers < 1:
        raise SynthError(f"--workers {args.workers}: need at least 1 worker process")
    for flag, value in (
        ("--defect-free-fraction", args.defect_free_fraction),
        ("--twin-prob", args.twin_prob),
    ):
        if not 0.0 <= value <= 1.0:
            raise SynthError(f"{flag} {value}: expected a number between 0 and 1")
    config = replace(
        SynthConfig(), defect_free_fraction=args.defect_free_fraction, twin_prob=args.twin_prob
    )
    start = time.perf_counter()
    dataset = generate_dataset(
        args.out,
        args.num_images,
        seed=args.seed,
        size=size,
        config=config,
        workers=args.workers,
        splits=splits,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - start
    if not args.quiet:
        defective = sum(1 for r in dataset.images if r.instances)
        objects = sum(len(r.instances) for r in dataset.images)
        print(
            f"wrote {len(dataset.images)} images ({defective} with defects, {objects} objects) "
            f"of {size[0]}x{size[1]} to {args.out} in {elapsed:.1f} s "
            f"({len(dataset.images) / elapsed:.1f} images/s)",
            file=sys.stderr,
        )
    return 0
