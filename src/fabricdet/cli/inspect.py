"""``fabricdet inspect MODEL FRAMES_DIR_OR_IMAGE --out DIR``: inspect a whole roll.

FRAMES is a folder of consecutive frames (sorted by name) or one long image. The roll is
cut into overlapping windows, detected, defects continuing across windows joined into one,
placed on the roll in metres, measured (from their masks when the model has a mask head:
skeleton length of threads, width, area; from their boxes otherwise) and graded by the
4-point system. DIR receives ``defects.json`` (with each defect's mask as a cropped RLE in
roll pixels), ``report.html`` (grade, defect map, table, gallery of defect crops) and
``windows.jsonl`` (detections per band of windows: a killed run started again with the same
arguments resumes where it stopped).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import ConfigError
from fabricdet.engine.inference import check_nms
from fabricdet.engine.inspect_roll import RollSettings, inspect_roll, inspection_json
from fabricdet.engine.roll_source import open_roll
from fabricdet.engine.tile_merge import MERGE_METHODS, MergeConfig
from fabricdet.inspect import GradingConfig

DEFECTS_FILE = "defects.json"
REPORT_FILE = "report.html"
CHECKPOINT_FILE = "windows.jsonl"


def _pitch(text: str) -> tuple[float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2) or not all(0 < p < float("inf") for p in parts):
        raise ConfigError(
            f"--mm-per-px {text!r}: expected one or two positive numbers X[,Y] (mm per pixel "
            "across and along the roll), e.g. --mm-per-px 0.2 or --mm-per-px 0.1,0.25"
        )
    return parts[0], parts[-1]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model.pt (or its run folder), or a .onnx")
    parser.add_argument(
        "frames", type=Path, help="folder of consecutive frames (sorted by name) or one image"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--mm-per-px",
        default="0.2",
        metavar="X[,Y]",
        help="camera pitch across (and along) the roll, mm per pixel (0.2)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=64,
        help="rows shared by consecutive windows (and columns by tiles) (64)",
    )
    parser.add_argument(
        "--frame-overlap",
        type=int,
        default=0,
        help="rows each input frame repeats from the previous one (0: frames abut)",
    )
    parser.add_argument(
        "--window-height", type=int, default=None, help="rows per window (default: one frame)"
    )
    parser.add_argument(
        "--tile-width", type=int, default=None, help="slice windows across into tiles this wide"
    )
    parser.add_argument(
        "--merge",
        default="sinkhorn",
        help=f"merge across window seams: {', '.join(MERGE_METHODS)} (sinkhorn)",
    )
    parser.add_argument("--no-stitch", action="store_true", help="do not join cut pieces")
    parser.add_argument("--nms", default=None, help="the model's own NMS (default: the run's)")
    parser.add_argument("--score-threshold", type=float, default=None, help="(run's default)")
    parser.add_argument("--pass-threshold", type=float, default=40.0, help="points/100 sq yd")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per model call (4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _settings(args: argparse.Namespace) -> RollSettings:
    if args.merge not in MERGE_METHODS:
        raise ConfigError(f"--merge {args.merge!r}: choose one of {', '.join(MERGE_METHODS)}")
    if args.nms is not None:
        check_nms(args.nms)
    for flag, value, low in (
        ("--overlap", args.overlap, 0),
        ("--batch-size", args.batch_size, 1),
        ("--window-height", args.window_height, 8),
        ("--tile-width", args.tile_width, 8),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{flag} {value}: expected an integer >= {low}")
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        raise ConfigError(f"--score-threshold {args.score_threshold}: expected 0..1")
    mm_x, mm_y = _pitch(args.mm_per_px)
    return RollSettings(
        mm_per_px_x=mm_x,
        mm_per_px_y=mm_y,
        window_height=args.window_height,
        tile_width=args.tile_width,
        overlap=args.overlap,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        nms=args.nms,
        merge=MergeConfig(method=args.merge, stitch=not args.no_stitch),
        grading=replace(GradingConfig(), pass_threshold=args.pass_threshold),
    )


#: Shrink factor of the windows above which ``inspect`` says how to keep the model's scale.
SHRINK_WARNING = 1.5


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    roll = open_roll(args.frames, frame_overlap=args.frame_overlap)
    window = min(settings.window_height or roll.heights[0], roll.length)
    if settings.tile_width is not None and settings.tile_width < roll.width:
        window = min(window, settings.tile_width)
    if settings.overlap >= window and roll.length > window:
        raise ConfigError(
            f"--overlap {settings.overlap}: must be less than the window ({window} px); lower it"
        )
    loaded = load_model(args.model, device="cpu")
    max_size = loaded.config.data.max_size
    width = min(settings.tile_width or roll.width, roll.width)
    shrink = max(width, window) / max_size
    if shrink > SHRINK_WARNING:
        # The model sees each window at its training size: a 2 px thread shrunk this much is
        # gone. Said, not refused: a model trained on shrunk frames expects it.
        print(
            f"note: windows of {width}x{window} px reach the model shrunk "
            f"{shrink:.1f}x (it takes {max_size} px); to inspect at the scale it was trained "
            f"on, give --tile-width {max_size} (and a --window-height of at most that)",
            file=sys.stderr,
        )
    out = Path(args.out)
    insp = inspect_roll(
        loaded,
        roll,
        settings,
        device=args.device,
        checkpoint=out / CHECKPOINT_FILE,
        progress=not args.quiet,
    )
    atomic_write_json(out / DEFECTS_FILE, inspection_json(insp))
    from fabricdet.report.roll_report import write_roll_report  # matplotlib only here

    write_roll_report(insp, out / REPORT_FILE, f"Roll inspection: {args.frames.name}")
    g = insp.grade
    print(
        f"{len(insp.defects)} defects on {insp.length_m:.2f} m: {g.total_points} points, "
        f"{g.points_per_100_sq_yd:.1f} per 100 sq yd, {'PASS' if g.passed else 'FAIL'}; "
        f"{out / DEFECTS_FILE}, {out / REPORT_FILE}"
    )
    return 0
