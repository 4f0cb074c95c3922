"""Whole-detector speed: images per second and the share of the NMS in the latency.

For each image size (default: the full Tianchi frame 2446x1000 and 640x256, the default
preset's input size) it times the network (backbone, FPN, head) and then each NMS method's
post-processing (candidate selection and the NMS) on the same head outputs, so the methods are
compared on identical candidates. With ``--model`` the trained
model's candidates are used; without, a randomly initialised default model (``--set``:
model overrides, e.g. ``model.box_quality=true``; with ``--model``, inference settings such as
``model.topk_candidates``), whose candidates on noise hit the ``topk_candidates`` cap
(1000). A model with the box-quality head
is timed with its rescoring (part of the post-processing) and without; every method with
its own kept boxes and with medoid boxes (``model.medoid_boxes``).

With ``--data`` it times real images instead: the first ``--images`` of a split, each read and
resized as inference does (the model's ``data.max_size``), the median over repeats of each
image, then the mean over the images (the image column gives the first one's size). How much
SinkhornNMS costs depends on the candidates' clusters, and a trained model's candidates on
fabric differ from those on noise.

    python benchmarks/detector_speed.py [--model RUN/model.pt] [--sizes 2446x1000 640x256]
        [--methods greedy sinkhorn] [--repeats 10] [--device cpu] [--threads 2]
        [--set KEY=VALUE ...] [--data DATA --split test --images 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from fabricdet.data.formats.detect import load_dataset
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.data import load_for_model, select_split
from fabricdet.engine.inference import apply_inference_overrides
from fabricdet.models import build_model
from fabricdet.models.detector import FabricDetector
from fabricdet.models.head import HeadOutput, candidate_scores


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms up caches and the allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def _model(path: str | None, overrides: list[str]) -> FabricDetector:
    if path:
        loaded = load_model(path)
        apply_inference_overrides(loaded, overrides)
        model = loaded.model
    else:
        torch.manual_seed(0)
        model = build_model(apply_overrides(preset("default"), overrides).model, num_classes=20)
    if not isinstance(model, FabricDetector):
        raise SystemExit(f"{path}: not a fabricdet detector")
    return model.eval()


def _inputs(args: argparse.Namespace) -> list[tuple[str, list[torch.Tensor]]]:
    """(name, images) per row group: one noise image per ``--sizes`` entry, or the first
    ``--images`` images of ``--data``'s split, read as inference reads them."""
    if args.data is None:
        inputs = []
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            noise = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
            inputs.append((size, [noise]))
        return inputs
    if args.model is None:
        raise SystemExit("--data needs --model (the image scale is the trained model's)")
    data_cfg = load_model(args.model).config.data
    dataset = select_split(load_dataset(Path(args.data)), args.split)
    records = dataset.images[: args.images]
    images = [load_for_model(dataset.image_path(rec), data_cfg)[0] for rec in records]
    h, w = images[0].shape[-2:]
    return [(f"{len(images)} {args.split} images, {w}x{h}", images)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model.pt (default: random-init default model)")
    parser.add_argument("--sizes", nargs="+", default=["2446x1000", "640x256"])
    parser.add_argument("--methods", nargs="+", default=["greedy", "sinkhorn"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the random-init model; of a trained one, "
                        "inference settings (model.topk_candidates=300)")  # fmt: skip
    parser.add_argument("--data", type=Path, help="time these images instead of noise")
    parser.add_argument("--split", default="test", help="--data's split")
    parser.add_argument("--images", type=int, default=50, help="how many of --data's images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = _model(args.model, args.set).to(device)
    print(f"device {device}, {torch.get_num_threads()} threads, model {args.model or 'random'}")
    print(
        "| image | NMS | network ms | post-processing ms | total ms | images/s "
        "| post-processing share | candidates |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, images in _inputs(args):
        rows: dict[str, list[tuple[float, float, int]]] = {}
        for image in images:
            for row, timing in _time_image(model, image.to(device), args).items():
                rows.setdefault(row, []).append(timing)
        for row, timings in rows.items():
            net_ms, nms_ms, cand = (statistics.mean(t[k] for t in timings) for k in range(3))
            total = net_ms + nms_ms
            print(
                f"| {name} | {row} | {net_ms:.1f} | {nms_ms:.2f} | {total:.1f} | "
                f"{1000 / total:.2f} | {100 * nms_ms / total:.1f}% | {cand:.0f} |"
            )


def _time_image(
    model: FabricDetector, image: torch.Tensor, args: argparse.Namespace
) -> dict[str, tuple[float, float, int]]:
    """Network ms, post-processing ms and candidate count of one image, per NMS row."""
    device = image.device
    sizes = [(int(image.shape[-2]), int(image.shape[-1]))]
    rows = {}
    with torch.inference_mode():

        def network() -> tuple[list[torch.Tensor], HeadOutput]:
            feats = model.features(model._batch([image]))
            return feats, model.head(feats)

        net_ms = _median_ms(network, args.repeats, device)
        feats, out = network()
        cand = int((candidate_scores(out) > model.cfg.score_thresh).sum())
        cand = min(cand, model.cfg.topk_candidates)
        # a model with the box-quality head: with its rescoring and without
        rescoring = [True, False] if model.box_quality is not None else [False]
        runs = [(m, r, b) for m in args.methods for r in rescoring for b in (False, True)]
        for method, rescore, medoid in runs:
            model.nms_method = method
            model.cfg.box_quality_rescore = rescore
            model.cfg.medoid_boxes = medoid
            post = partial(model.postprocess, out, sizes, feats)
            name = method + (" + box rescoring" if rescore else "")
            name += " + medoid boxes" if medoid else ""
            rows[name] = (net_ms, _median_ms(post, args.repeats, device), cand)
    return rows


if __name__ == "__main__":
    main()
