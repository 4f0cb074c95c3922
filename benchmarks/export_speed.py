"""Latency of the exported detector in onnxruntime (CPU) against eager PyTorch.

Per image size it times, on the same model and the same padded image (batch 1):

- eager ``model([image])``: the engine's eval path (network, candidates, sparse SinkhornNMS);
- eager ``ExportableDetector``: the graph that is exported (dense SinkhornNMS), in PyTorch;
- the exported ONNX file in onnxruntime's CPU provider.

Without ``--model`` the model is a randomly initialised ``default``-preset detector with the 20
Tianchi categories: its candidates all pass the score threshold, so every run carries the full
``topk_candidates`` (1000) into the NMS, the worst case. Exporting takes about a minute (the
dynamo exporter); ``--onnx FILE`` reuses a file exported before from the same model.

    python benchmarks/export_speed.py [--model RUN/model.pt] [--onnx FILE]
        [--sizes 640x256 2446x1000] [--runs 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.engine.checkpoint import LoadedModel, load_model
from fabricdet.engine.config import preset
from fabricdet.export import ExportableDetector, export_model
from fabricdet.models import build_model


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):  # allocator, oneDNN primitive caches, onnxruntime's arena
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _loaded(path: str | None) -> LoadedModel:
    if path:
        return load_model(path)
    torch.manual_seed(0)
    cfg = preset("default")
    model = build_model(cfg.model, len(TIANCHI_CATEGORIES)).eval()
    return LoadedModel(model, cfg, TIANCHI_CATEGORIES, Path("random-init-default"), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model.pt (default: random-init default model)")
    parser.add_argument("--onnx", help="an ONNX file exported from the same model (skip export)")
    parser.add_argument("--sizes", nargs="+", default=["640x256", "2446x1000"])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per cell (median)")
    parser.add_argument("--threads", type=int, default=0, help="threads of both (0: defaults)")
    args = parser.parse_args()

    loaded = _loaded(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(args.onnx) if args.onnx else Path(tmp) / "model.onnx"
        if not args.onnx:
            report = export_model(loaded, onnx_path)
            print(
                f"exported in {report.seconds:.0f} s ({report.exporter}, opset {report.opset}); "
                f"same detections as eager at {report.check_shape}: {report.same_detections}"
                + ("" if args.model else " (a random model's scores nearly tie: rounding reorders)")
            )
        session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    model = loaded.model.eval()
    wrapper = ExportableDetector(model).eval()
    stride = wrapper.stride
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model {loaded.path}, {len(loaded.categories)} classes, topk {wrapper.topk}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{ort.__version__}; {os.cpu_count()} CPUs, load average {load:.1f}; median of "
        f"{args.runs} runs, batch 1"
    )
    print()
    print("| image (padded) | eager model() ms | eager export graph ms | onnxruntime ms | "
          "onnxruntime / eager | detections (eager / onnx) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
        image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
        padded = torch.full((1, 3, ph, pw), 0.5)
        padded[0, :, :h, :w] = image
        feed = {"images": padded.numpy()}
        with torch.inference_mode():
            model.nms_method = "sinkhorn"
            eager_ms = _median_ms(lambda im=image: model([im]), args.runs)
            graph_ms = _median_ms(lambda x=padded: wrapper(x), args.runs)
            n_eager = len(model([image])[0]["scores"])
        onnx_ms = _median_ms(lambda f=feed: session.run(None, f), args.runs)
        n_onnx = int(np.asarray(session.run(None, feed)[3])[0])
        print(
            f"| {w}x{h} ({pw}x{ph}) | {eager_ms:.0f} | {graph_ms:.0f} | {onnx_ms:.0f} | "
            f"{onnx_ms / eager_ms:.2f} | {n_eager} / {n_onnx} |"
        )


if __name__ == "__main__":
    main()
