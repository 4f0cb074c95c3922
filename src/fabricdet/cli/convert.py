"""``fabricdet convert SRC DST --to tianchi|coco|yolo``: convert a dataset folder.

The source format is detected. DST is created complete (images and annotations) or not at
all. The skipped-record report of a lenient read goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fabricdet.data.formats import (
    FORMATS,
    export_dataset,
    information_lost,
    load_dataset_with_report,
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", type=Path, help="source dataset (Tianchi folder, COCO JSON, YOLO folder)"
    )
    parser.add_argument("dst", type=Path, help="folder to create (must not exist, or be empty)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="output format")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=True,
        help="stop on any bad record, listing them all (default)",
    )
    mode.add_argument(
        "--lenient", dest="strict", action="store_false", help="skip bad records and report them"
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="COCO source: folder that file_name is relative to",
    )
    parser.add_argument(
        "--copy", action="store_true", help="copy images even where hard links are possible"
    )


def run(args: argparse.Namespace) -> int:
    dataset, report = load_dataset_with_report(
        args.src, strict=args.strict, image_root=args.image_root
    )
    if not report.clean:
        print(report.format(), file=sys.stderr)
    for note in information_lost(dataset, args.to):
        print(f"note: {note}", file=sys.stderr)
    out = export_dataset(dataset, args.dst, args.to, link=not args.copy)
    n_inst = sum(len(r.instances) for r in out.images)
    print(
        f"wrote {len(out.images)} images, {n_inst} objects, {out.num_classes} categories "
        f"as {args.to} to {args.dst}",
        file=sys.stderr,
    )
    return 0
