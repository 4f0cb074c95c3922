"""The ``fabricdet`` command line.

Each subcommand lives in its own module under ``fabricdet.cli`` and exposes
``register(subparsers)``; the module is imported only when its command runs, so
``fabricdet --help`` does not pay for torch. This file only dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from fabricdet import __version__
from fabricdet.errors import FabricdetError

# name -> (module under fabricdet.cli, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the whole pipeline on the synthetic benchmark: data, training, report"),
    "synth": ("synth", "generate a synthetic fabric-defect dataset in the Tianchi layout"),
    "synth-general": ("synth_general", "generate a general (non-fabric) COCO detection set"),
    "convert": ("convert", "convert a dataset between the Tianchi, COCO and YOLO formats"),
    "eval-preds": ("eval_preds", "score a prediction file against a dataset"),
    "train": ("train", "train a detector (single process or torchrun DDP; resumable)"),
    "eval": ("eval", "evaluate a trained model on a dataset split (COCO AP, Tianchi score)"),
    "detect": ("detect", "detect defects in image files; write JSON and annotated images"),
    "inspect": ("inspect", "inspect a roll of frames: join, place, measure and grade its defects"),
    "serve": ("serve", "serve a model over HTTP: POST an image, get its detections as JSON"),
    "export": ("export", "export a model with its NMS as one ONNX or TorchScript file"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabricdet",
        description="Fabric defect detection and outlining with differentiable Sinkhorn NMS.",
    )
    parser.add_argument("--version", action="version", version=f"fabricdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        # Sub-parsers are filled in lazily: only the chosen command's module is imported.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # handles --help / --version / unknown command
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    name = argv[0]
    module = import_module(f"fabricdet.cli.{COMMANDS[name][0]}")
    cmd_parser = argparse.ArgumentParser(prog=f"fabricdet {name}", description=COMMANDS[name][1])
    module.register(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except FabricdetError as err:
        print(f"fabricdet {name}: error: {err}", file=sys.stderr)
        return 2
