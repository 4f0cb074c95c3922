"""Every NMS method on the same noisy-oracle candidates: the duplicate removal in isolation.

A weak detector hides what its NMS does behind its misses (the CPU ablation's models score AP
under 0.01 whatever the NMS). Here the candidates come from the ground truth of the synthetic
benchmark, made to look like a dense detector's output before NMS, so the AP differences are
the NMS methods' own:

- per object, ``1 + Poisson(--dups)`` candidates, each side jittered (normal, ``--jitter`` of
  the side length up to 256 px, plus 0.5 px); a share ``--bias`` of that variance is one error
  common to all of the object's candidates (a detector's duplicates share its features and err
  together; averaging them, as box fusion does, cannot remove that part). On a long thread
  (aspect >= 8) a candidate covers only a random part of it with probability ``--fragments``
  (a location sees only a stretch of a thread across the frame, so dense heads give such
  pieces);
- scores: an object's peak, uniform in 0.3-1, times ``exp(-offset / 2)`` (offset: the mean
  side error in standard deviations; better-placed boxes tend to score higher) times noise,
  uniform in 0.7-1;
- 10 % of the candidates take a wrong class; ``Poisson(--clutter)`` low-scored random boxes per
  image (a quarter of them thread-shaped), wrong wherever they land;
- embeddings (16-d, for SinkhornNMS' appearance term): each object a random unit vector, each
  candidate that plus Gaussian noise of norm about ``--embed-noise``; clutter random.

Methods: greedy, soft, matrix, diou, wbf; SinkhornNMS as the detector runs it (each kept
seed's own box, class-mass capacities), without the embeddings, with slot capacities of the
look-alike mass (``appearance_capacity``), with plan-fused boxes and with score-sharpened
fused boxes (``fuse_power`` 4). COCO AP/AP50/AP75 on the chosen split and on its ``adjacent``
subset (images holding two defects that overlap or lie within ``--gap`` px: parallel threads,
twins), over ``--repeats`` draws of the noise (mean; the spread between draws is printed
too).

    python benchmarks/nms_oracle.py [--data DIR] [--split all] [--repeats 3] [--dups 6]
        [--jitter 0.05] [--bias 0.5] [--fragments 0.3] [--clutter 3] [--embed-noise 0.5] [--gap 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.formats import load_dataset
from fabricdet.data.synth import load_or_generate
from fabricdet.metrics import Predictions, coco_metrics
from fabricdet.models.config import SinkhornNMSConfig
from fabricdet.ops import batched_nms

sys.path.insert(0, str(Path(__file__).parent))
from nms_ablation import adjacent  # benchmarks/ is a folder of scripts, not a package

EMBED_DIM = 16
#: the detector's default SinkhornNMS options, as its post-processing passes them
SINKHORN = SinkhornNMSConfig()
#: row name -> (NMS method, SinkhornNMS option overrides, pass the embeddings)
METHODS: dict[str, tuple[str, dict[str, object], bool]] = {
    "greedy": ("greedy", {}, False),
    "soft": ("soft", {}, False),
    "matrix": ("matrix", {}, False),
    "diou": ("diou", {}, False),
    "wbf": ("wbf", {}, False),
    "sinkhorn": ("sinkhorn", {}, True),
    "sinkhorn, no embeddings": ("sinkhorn", {}, False),
    "sinkhorn, appearance capacities": ("sinkhorn", {"appearance_capacity": True}, True),
    "sinkhorn, box fusion": ("sinkhorn", {"fuse_boxes": True}, True),
    "sinkhorn, box fusion, fuse_power 4": (
        "sinkhorn",
        {"fuse_boxes": True, "fuse_power": 4.0},
        True,
    ),
}


class Candidates:
    """One image's candidates: boxes [N, 4], scores [N], labels [N], embeddings [N, D]."""

    def __init__(self, boxes: list, scores: list, labels: list, embeddings: list) -> None:
        self.boxes = torch.tensor(np.array(boxes, np.float32).reshape(-1, 4))
        self.scores = torch.tensor(np.array(scores, np.float32))
        self.labels = torch.tensor(np.array(labels, np.int64))
        self.embeddings = torch.tensor(np.array(embeddings, np.float32).reshape(-1, EMBED_DIM))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def oracle(
    record: ImageRecord,
    dataset: DetectionDataset,
    rng: np.random.Generator,
    args: Namespace,
) -> Candidates:
    """The noisy-oracle candidates of one image (module docstring)."""
    w, h, c = record.width, record.height, dataset.num_classes
    boxes, scores, labels, embs = [], [], [], []
    for inst in record.instances:
        gt = np.array(inst.box, np.float64)
        size = gt[2:] - gt[:2]
        label = dataset.label_of(inst.category_id)
        look = _unit(rng.normal(size=EMBED_DIM))
        peak = rng.uniform(0.3, 1.0)
        long_axis = int(np.argmax(size)) if size.max() >= 8 * max(size.min(), 1.0) else -1
        sigma = args.jitter * np.tile(np.minimum(size, 256.0), 2) + 0.5
        common = rng.normal(0.0, sigma * args.bias**0.5)
        for _ in range(1 + rng.poisson(args.dups)):
            box = gt.copy()
            if long_axis >= 0 and rng.random() < args.fragments:
                # a stretch of the thread: 20-90 % of its length, anywhere along it
                length = size[long_axis] * rng.uniform(0.2, 0.9)
                start = gt[long_axis] + rng.uniform(0, size[long_axis] - length)
                box[long_axis], box[long_axis + 2] = start, start + length
            shift = common + rng.normal(0.0, sigma * (1 - args.bias) ** 0.5)
            box = np.clip(box + shift, 0, [w, h, w, h])
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            offset = float(np.mean(np.abs(shift) / sigma))  # in standard deviations
            boxes.append(box)
            scores.append(peak * np.exp(-0.5 * offset) * rng.uniform(0.7, 1.0))
            labels.append(int(rng.integers(c)) if rng.random() < 0.1 else label)
            embs.append(_unit(look + rng.normal(0.0, args.embed_noise / EMBED_DIM**0.5, EMBED_DIM)))
    for _ in range(rng.poisson(args.clutter)):
        bw, bh = rng.uniform(6, 80, 2)
        if rng.random() < 0.25:  # thread-shaped clutter across much of the frame
            span, thick = rng.uniform(0.3, 1.0), rng.uniform(2, 12)
            bw, bh = (span * w, thick) if rng.random() < 0.5 else (thick, span * h)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        boxes.append([x, y, x + bw, y + bh])
        scores.append(rng.uniform(0.01, 0.4))
        labels.append(int(rng.integers(c)))
        embs.append(_unit(rng.normal(size=EMBED_DIM)))
    return Candidates(boxes, scores, labels, embs)


def run_nms(cand: Candidates, row: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, labels) kept by the row's method, called as the detector's
    post-processing calls it (SinkhornNMS with the model's default options)."""
    if len(cand.scores) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    method, overrides, with_embeddings = METHODS[row]
    options: dict[str, object] = {}
    if method == "sinkhorn":
        options = {**SINKHORN.solver_options(SINKHORN.eps), **overrides}
        if with_embeddings:
            options["embeddings"] = cand.embeddings
    res = batched_nms(
        cand.boxes, cand.scores, cand.labels, SINKHORN.iou_threshold, method=method,
        return_result=True, **options,
    )  # fmt: skip
    return res.boxes.numpy(), res.scores.numpy(), cand.labels[res.keep].numpy()


def score(
    dataset: DetectionDataset,
    images: list[ImageRecord],
    kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[float, float, float]:
    """COCO (AP, AP50, AP75) of the kept detections on ``images``."""
    subset = DetectionDataset(dataset.root, dataset.categories, images)
    ids = [np.full(len(kept[r.image_id][1]), r.image_id) for r in images]
    cat_ids = np.array([c.id for c in dataset.categories])
    preds = Predictions(
        np.concatenate(ids),
        np.concatenate([cat_ids[kept[r.image_id][2]] for r in images]),
        np.concatenate([kept[r.image_id][0] for r in images]),
        np.concatenate([kept[r.image_id][1] for r in images]),
    )
    m = coco_metrics(subset, preds)
    return m.ap, m.ap50, m.ap75


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, help="dataset (default: render 1000 640x256 frames to --out)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/nms-oracle"))
    p.add_argument("--split", default="all", help="split to score, or 'all'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dups", type=float, default=6.0)
    p.add_argument("--jitter", type=float, default=0.05)
    p.add_argument("--bias", type=float, default=0.5)
    p.add_argument("--fragments", type=float, default=0.3)
    p.add_argument("--clutter", type=float, default=3.0)
    p.add_argument("--embed-noise", type=float, default=0.5)
    p.add_argument("--gap", type=float, default=8.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.data is not None:
        dataset = load_dataset(args.data)
    else:  # the 640x256 set the README's figures were measured on
        dataset = load_or_generate(args.out / "data", 1000, 0, (640, 256), progress=False)
    images = [r for r in dataset.images if args.split in ("all", r.split)]
    adj = [r for r in images if adjacent(r, args.gap)]
    results: dict[str, list[tuple[float, ...]]] = {m: [] for m in METHODS}
    for repeat in range(args.repeats):
        rng = np.random.default_rng(repeat)
        cands = {r.image_id: oracle(r, dataset, rng, args) for r in images}
        for method in METHODS:
            kept = {i: run_nms(c, method) for i, c in cands.items()}
            results[method].append((*score(dataset, images, kept), score(dataset, adj, kept)[0]))
    n_obj = sum(len(r.instances) for r in images)
    print(f"{len(images)} images ({n_obj} defects), adjacent subset {len(adj)} images; "
          f"{args.repeats} draws; mean (spread max - min)")  # fmt: skip
    print("| NMS | AP | AP50 | AP75 | adjacent AP |")
    print("|---|---|---|---|---|")
    for method, rows in results.items():
        cells = []
        for col in zip(*rows, strict=True):
            cells.append(f"{statistics.mean(col):.3f} ({max(col) - min(col):.3f})")
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
