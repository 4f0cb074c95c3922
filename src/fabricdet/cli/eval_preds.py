"""``fabricdet eval-preds DATA PRED [--json]``: score a prediction file against a dataset.

DATA is any supported dataset (format detected), PRED a Tianchi submission or COCO results
JSON (detected). With ``--json`` stdout holds exactly one JSON object (see
:mod:`fabricdet.metrics.evaluate` for its keys); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fabricdet.data.formats import load_dataset_with_report
from fabricdet.metrics.evaluate import evaluate_predictions, format_summary
from fabricdet.metrics.prediction_files import read_predictions


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset: Tianchi folder, COCO JSON, YOLO folder")
    parser.add_argument("pred", type=Path, help="Tianchi submission or COCO results JSON")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="an image counts as predicted defective only with a detection scoring at least "
        "this (Tianchi ACC; default: any detection)",
    )
    parser.add_argument("--boundary-d", type=int, default=2, help="boundary IoU band (pixels)")
    parser.add_argument("--split", default=None, help="score only this split of DATA")
    parser.add_argument("--lenient", action="store_true", help="skip bad dataset records")
    parser.add_argument("--image-root", type=Path, default=None, help="COCO DATA: image folder")
    parser.add_argument(
        "--no-image-check",
        dest="check_images",
        action="store_false",
        help="COCO DATA: trust width/height in the JSON and open no image",
    )
    parser.add_argument("--verbose", action="store_true", help="pycocotools' report on stderr")


def run(args: argparse.Namespace) -> int:
    dataset, report = load_dataset_with_report(
        args.data,
        strict=not args.lenient,
        image_root=args.image_root,
        check_images=args.check_images,
    )
    if not report.clean:
        print(report.format(), file=sys.stderr)
    if args.split is not None:
        dataset = dataset.subset(args.split)
    predictions = read_predictions(args.pred, dataset)
    summary = evaluate_predictions(
        dataset,
        predictions,
        score_threshold=args.score_threshold,
        boundary_d=args.boundary_d,
        verbose=args.verbose,
    )
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(format_summary(summary))
    return 0
