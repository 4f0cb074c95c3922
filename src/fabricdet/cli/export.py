"""``fabricdet export MODEL --format onnx|torchscript --out FILE [--max-det N] [--opset K]``.

Writes MODEL (``model.pt`` or its run folder) as one file that holds the network, the
candidate selection and SinkhornNMS: input ``images`` float32 ``[B, 3, H, W]`` (RGB in [0, 1],
resized as the run resizes, H and W multiples of the largest stride), outputs ``boxes``
``[B, N, 4]``, ``scores`` ``[B, N]``, ``labels`` ``[B, N]`` and ``num_detections`` ``[B]``,
zero-padded past the count (see :mod:`fabricdet.export.wrapper`). The categories, the image
scale and the NMS settings travel in the file, so ``fabricdet eval FILE.onnx DATA`` and
``fabricdet detect FILE.onnx IMAGES`` run it with onnxruntime like the model itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fabricdet.export.exporter import DEFAULT_OPSET, EXPORT_FORMATS, EXPORTERS


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model.pt (or the run folder holding it)")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="default: onnx")
    parser.add_argument("--out", type=Path, required=True, help="file to write (.onnx for ONNX)")
    parser.add_argument(
        "--max-det",
        type=int,
        default=None,
        help="detections per image, the outputs' padded size (default: the model's)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, >= 17 (default: {DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--exporter",
        default="auto",
        choices=EXPORTERS,
        help="ONNX exporter: dynamo (torch.export), legacy (TorchScript-based), or auto "
        "(dynamo, legacy if it fails; default)",
    )


def run(args: argparse.Namespace) -> int:
    from fabricdet.engine.checkpoint import load_model
    from fabricdet.export import ExportError, export_model

    if args.model.suffix.lower() == ".onnx":
        raise ExportError(f"{args.model}: already exported; export the model.pt it came from")
    loaded = load_model(args.model, device="cpu")
    report = export_model(
        loaded,
        args.out,
        args.format,
        max_det=args.max_det,
        opset=args.opset,
        exporter=args.exporter,
    )
    how = report.exporter + (f", opset {report.opset}" if report.opset is not None else "")
    print(f"wrote {report.path} ({report.format}, {how}) in {report.seconds:.1f} s")
    if report.fallback_reason:
        print(f"  the dynamo exporter was not used: {report.fallback_reason}")
    check = "x".join(map(str, report.check_shape))
    if report.same_detections:
        print(
            f"  checked at input {check}: same detections as the model, boxes within "
            f"{report.max_box_error:.2g} px"
        )
    else:
        print(
            f"  warning: at input {check} the file's detections differ from the model's "
            f"(largest box difference {report.max_box_error:.2g} px): near-tied scores "
            "can order differently; compare them on real images with `fabricdet eval`"
        )
    return 0
