"""Roll inspection throughput: metres of fabric per minute on this machine.

A synthetic roll (default 1 m of 4096x256 line-scan frames at 0.25 mm/px: a 1.02 m wide
fabric, 16 frames) is inspected end to end as ``fabricdet inspect`` does it (frames read and
joined, windows of one frame height sharing 64 rows, sliced into tiles sharing 64 columns,
detector, seam merge, measurement, grading), and the wall time turned into metres per
minute. Throughput scales with the pixels per metre: 1 / (mm_per_px_y) rows per mm.

The detector is a trained model (``--model``; tiles default to its training size,
``data.max_size``, so that they reach it unresized, at the scale it learnt) or, by default, the
default architecture untrained (random weights, 1024 px tiles), run with its input size set to
the tile size (no resizing: the camera's resolution is the model's). An untrained model's
candidates fill the top-k cap, the worst case for the NMS. A one-frame roll is inspected
first, untimed: the first call compiles the NMS kernel (tens of seconds on a fresh install,
cached on disk after) and warms the device, which a running line does once.

    python benchmarks/roll_throughput.py [--length 1.0] [--frame 4096x256] [--mm-per-px 0.25]
        [--tile-width W] [--overlap 64] [--merge sinkhorn] [--model RUN/model.pt]
        [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.synth.roll import generate_roll
from fabricdet.engine.checkpoint import LoadedModel, load_model
from fabricdet.engine.config import preset
from fabricdet.engine.inspect_roll import RollSettings, inspect_roll
from fabricdet.engine.roll_source import open_roll
from fabricdet.engine.tile_merge import MergeConfig


def _model(args: argparse.Namespace) -> LoadedModel:
    if args.model:
        return load_model(args.model)
    from fabricdet.models import build_model

    torch.manual_seed(0)
    cfg = preset("default")
    cfg = replace(cfg, data=replace(cfg.data, max_size=args.tile_width or 1024))
    model = build_model(cfg.model, len(TIANCHI_CATEGORIES)).eval()
    return LoadedModel(model, cfg, TIANCHI_CATEGORIES, Path("untrained"), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=float, default=1.0, help="roll length, metres")
    parser.add_argument("--frame", default="4096x256", help="frame WxH")
    parser.add_argument("--mm-per-px", type=float, default=0.25)
    parser.add_argument("--tile-width", type=int, help="default: the model's max_size, 1024")
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--merge", default="sinkhorn")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fw, fh = (int(v) for v in args.frame.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        truth = generate_roll(
            tmp, args.length, frame_size=(fw, fh), mm_per_px=(args.mm_per_px,) * 2, progress=False
        )
        print(
            f"roll: {truth.length_m:.2f} m x {truth.width_m:.2f} m, {truth.num_frames} frames "
            f"of {fw}x{fh} at {args.mm_per_px} mm/px, {len(truth.instances)} defects "
            f"(rendered in {time.perf_counter() - start:.0f} s)"
        )
        loaded = _model(args)
        args.tile_width = args.tile_width or loaded.config.data.max_size
        settings = RollSettings(
            mm_per_px_x=args.mm_per_px,
            mm_per_px_y=args.mm_per_px,
            window_height=fh,
            tile_width=args.tile_width if args.tile_width < fw else None,
            overlap=args.overlap,
            score_threshold=0.05,
            merge=MergeConfig(method=args.merge),
        )
        warm = Path(tmp) / "warm-up"
        generate_roll(warm, fh * args.mm_per_px / 1000, frame_size=(fw, fh),
                      mm_per_px=(args.mm_per_px,) * 2, progress=False)  # fmt: skip
        inspect_roll(loaded, open_roll(warm / "frames"), settings, device=args.device,
                     progress=False)  # fmt: skip
        roll = open_roll(Path(tmp) / "frames")
        insp = inspect_roll(loaded, roll, settings, device=args.device, progress=False)
    rate = 60.0 * insp.length_m / insp.seconds
    model = args.model or "untrained default model"
    print(f"\nmodel: {model}; device {args.device}, {args.threads} thread(s)\n")
    print("| frame | mm/px | tiles | windows | defects | seconds | ms/window | m/min |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {fw}x{fh} | {args.mm_per_px} | {args.tile_width}+{args.overlap} | {insp.windows} "
        f"| {len(insp.defects)} | {insp.seconds:.1f} | {1000 * insp.seconds / insp.windows:.0f} "
        f"| {rate:.2f} |"
    )


if __name__ == "__main__":
    main()
