"""``fabricdet detect MODEL IMAGES... --out DIR``: detections on image files.

MODEL is ``model.pt``, its run folder, or a ``.onnx`` written by ``fabricdet export``.
IMAGES are files or folders (their image files). DIR receives ``detections.json`` (per image:
file, boxes in original pixels, scores, labels, category ids and names; when the model predicts
masks (``model.mask_head``): each defect's mask as RLE, its area and length in pixels (skeleton
length for thin defects) and its shape) and one annotated JPEG per image. ``--tile W`` cuts each
image into W x W tiles (sharing ``--overlap`` pixels), detects on each and joins the defects
across the seams: for a model trained on crops at the camera's scale (the demo's 320 px), which
would otherwise see a whole frame shrunk to its training size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import ConfigError
from fabricdet.engine.inference import check_nms
from fabricdet.engine.predict import detect, write_detections
from fabricdet.ops.nms import NMS_METHODS


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="model.pt (or its run folder), or a .onnx from fabricdet export"
    )
    parser.add_argument("images", type=Path, nargs="+", help="image files or folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--nms", default=None, help=f"NMS method: {', '.join(NMS_METHODS)} (default: the run's)"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="report detections scoring at least this (default: the run's eval.defect_threshold)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="detect on W x W tiles and merge across seams (default: the whole image)",
    )
    parser.add_argument(
        "--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (64)"
    )
    parser.add_argument("--no-draw", action="store_true", help="write detections.json only")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    # IMAGES may be split by options ("MODEL a.jpg --out D b.jpg").
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    if args.nms is not None:
        check_nms(args.nms)
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        raise ConfigError(f"--score-threshold {args.score_threshold}: expected a number in 0..1")
    if args.tile is not None and not 0 <= args.overlap < args.tile:
        raise ConfigError(
            f"--tile {args.tile} --overlap {args.overlap}: need 0 <= overlap < tile; "
            "lower --overlap or raise --tile"
        )
    loaded = load_model(args.model, device="cpu")
    detections = detect(
        loaded,
        args.images,
        nms=args.nms,
        score_threshold=args.score_threshold,
        device=args.device,
        progress=not args.quiet,
        tile=args.tile,
        overlap=args.overlap,
    )
    path = write_detections(detections, args.out, draw=not args.no_draw)
    total = sum(len(d.scores) for d in detections)
    print(f"{total} detections in {len(detections)} images: {path}")
    return 0
