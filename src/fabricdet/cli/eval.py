"""``fabricdet eval MODEL DATA [--nms METHOD] [--split S] [--json] [--out DIR] [--report F]
[key=value ...]``.

Runs MODEL (``model.pt`` or its run folder) on a split of DATA (default: the run's validation
split; ``all`` for every image), prints COCO AP/AP50/AP75, the Tianchi score (ACC, VOC mAP) and
the latency, and writes the Tianchi submission, the COCO results and the metrics to --out
(default: beside MODEL). ``--json`` prints exactly one JSON object on stdout (progress goes to
stderr); ``--nms all`` evaluates every NMS method and prints ``{method: metrics}``. MODEL may
also be a ``.onnx`` written by ``fabricdet export``, run by onnxruntime with its SinkhornNMS
inside the graph (``--nms`` cannot change it). ``--report FILE.html`` also writes a
self-contained HTML report (:mod:`fabricdet.report.evaluation`); with ``--nms all``, one per
method, named ``FILE_<method>.html``. ``key=value`` overrides change inference settings of the
run (``model.sinkhorn.*``, thresholds, candidate counts, ``eval.*``) for this evaluation only.
``--calibrate-on val`` chooses the defect threshold (which images the submission calls
defective) on another split, for each NMS method with its own scores, as the demo's report does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from fabricdet.data.formats import load_dataset_with_report
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import validate
from fabricdet.engine.evaluate import EvalCapture, calibrated, evaluate, evaluate_all_nms
from fabricdet.engine.inference import apply_inference_overrides, check_nms
from fabricdet.errors import FabricdetError
from fabricdet.metrics import format_summary
from fabricdet.ops.nms import NMS_METHODS

ALL_METHODS = "all"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="model.pt (or its run folder), or a .onnx from fabricdet export"
    )
    parser.add_argument("data", type=Path, help="dataset: Tianchi folder, COCO JSON, YOLO folder")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="inference settings for this evaluation, e.g. model.sinkhorn.fuse_boxes=false "
        "model.score_thresh=0.05 (model.sinkhorn.*, model.box_quality_rescore, "
        "model.medoid_boxes, model.medoid_power, model.score_thresh, model.topk_candidates, "
        "model.detections_per_img, eval.*)",
    )
    parser.add_argument(
        "--nms",
        default=None,
        help=f"NMS method: {', '.join(NMS_METHODS)}, or '{ALL_METHODS}' (default: the run's)",
    )
    parser.add_argument("--split", default=None, help="split to score, or 'all' (default: val)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: MODEL's)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="drop detections below this before scoring (default: the run's eval.score_threshold)",
    )
    parser.add_argument(
        "--defect-threshold",
        type=float,
        default=None,
        help="an image is defective when a detection scores at least this; the Tianchi "
        "submission keeps those images (default: the run's eval.defect_threshold)",
    )
    parser.add_argument(
        "--calibrate-on",
        default=None,
        metavar="SPLIT",
        help="instead, choose the defect threshold most accurate on SPLIT (e.g. val), for each "
        "NMS method on its own",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="also write an HTML report (per-class AP, PR curves, confusion, speed, gallery); "
        "with --nms all, FILE_<method>.html per method",
    )
    parser.add_argument("--lenient", action="store_true", help="skip bad dataset records")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    # parse_args stops filling a '*' positional at the first option.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    if args.nms is not None and args.nms != ALL_METHODS:
        check_nms(args.nms)
    if args.calibrate_on is not None and args.defect_threshold is not None:
        raise FabricdetError("give --defect-threshold or --calibrate-on, not both")
    loaded = load_model(args.model, device="cpu")
    apply_inference_overrides(loaded, args.overrides)
    dataset, report = load_dataset_with_report(args.data, strict=not args.lenient)
    if not report.clean:
        print(report.format(), file=sys.stderr)
    eval_cfg = loaded.config.eval
    if args.score_threshold is not None:
        eval_cfg = dataclasses.replace(eval_cfg, score_threshold=args.score_threshold)
    if args.defect_threshold is not None:
        eval_cfg = dataclasses.replace(eval_cfg, defect_threshold=args.defect_threshold)
    validate(dataclasses.replace(loaded.config, eval=eval_cfg))  # thresholds in 0..1
    out_dir = args.out or loaded.path.parent
    captures: dict[str, EvalCapture] = {}
    if args.nms == ALL_METHODS:
        results = evaluate_all_nms(
            loaded,
            dataset,
            split=args.split,
            eval_cfg=eval_cfg,
            out_dir=out_dir,
            device=args.device,
            progress=not args.quiet,
            captures=captures if args.report else None,
            calibrate_on=args.calibrate_on,
        )
        for method, summary in results.items():
            _report(args, report_path(args.report, method), summary, captures.get(method))
        if args.json:
            print(json.dumps(results, ensure_ascii=False))
        else:
            for method, summary in results.items():
                print(f"== NMS {method}: {summary['ms_per_image']:.1f} ms/image")
                print(format_summary(summary), end="\n\n")
        return 0
    if args.calibrate_on is not None:
        eval_cfg = calibrated(
            loaded, dataset, eval_cfg, nms=args.nms, split=args.calibrate_on,
            device=args.device, progress=not args.quiet,
        )  # fmt: skip
    capture = EvalCapture() if args.report else None
    summary = evaluate(
        loaded,
        dataset,
        split=args.split,
        nms=args.nms,
        eval_cfg=eval_cfg,
        out_dir=out_dir,
        device=args.device,
        progress=not args.quiet,
        capture=capture,
    )
    _report(args, args.report, summary, capture)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(
            f"NMS {summary['nms']}, split {summary['split']}: "
            f"{summary['ms_per_image']:.1f} ms/image"
        )
        print(format_summary(summary))
        print(f"wrote {', '.join(summary['files'].values())}")
    return 0


def report_path(report: Path | None, method: str) -> Path | None:
    """``FILE_<method>.html`` beside ``report`` (for ``--nms all``)."""
    return report.with_name(f"{report.stem}_{method}{report.suffix}") if report else None


def _report(
    args: argparse.Namespace,
    path: Path | None,
    summary: dict[str, Any],
    capture: EvalCapture | None,
) -> None:
    """Write the HTML report of one evaluation when ``--report`` asks for it."""
    if path is None or capture is None or capture.dataset is None:
        return
    from fabricdet.report.evaluation import write_eval_report  # matplotlib only when asked

    write_eval_report(
        path,
        summary,
        capture.dataset,
        capture.predictions,
        capture.latencies_ms,
        data=str(args.data),
        device=capture.device,
    )
    print(f"report: {path}", file=sys.stderr)
