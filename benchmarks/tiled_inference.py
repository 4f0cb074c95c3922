"""Tiled inference: AP of each seam merge vs whole-image inference, on synthetic images with
long defects crossing tile borders.

Images are synthetic 2446x1000 frames, each forced to hold long thread defects (broken, thick,
loose and hanging warps; thick wefts, broken spandex, centipedes) plus one short one (knot,
hole, nep), cut into a grid of tiles (default 640x640, 64 px overlap: 5 x 2 tiles, so both
vertical and horizontal seams are crossed). Per image the detector runs once on the tiles and
once on the whole image; every merge method is then applied to the same detections.

The detector is either a trained model (``--model RUN/model.pt``; on a CPU budget the demo
model is weak, which hides the merge behind its misses) or, by default, an oracle with
noise: for each tile, the ground-truth boxes clipped to the tile (pieces under 4 px along the
cut dropped, as a detector misses slivers), every side jittered (normal, 3 % of the side up
to 256 px, + 1 px; a side on the tile border only 0-2 px inward: a cut object visibly reaches
the edge),
scores uniform in 0.5-1, a jittered duplicate with a lower score for 30 % of the boxes, 5 %
missed, and 0.5 low-scored false positives per tile. So the numbers measure the merge.

Columns: COCO AP, AP50, AP75; ``whole@0.7``: share of the ground-truth defects crossing a seam
found by one box with IoU >= 0.7; ``boxes/cut``: boxes of the right class lying mostly
(>= 50 %) on such a defect (1.0: it came out as one box); merge time per image.

    python benchmarks/tiled_inference.py [--images 24] [--tile 640x640] [--overlap 64]
        [--model RUN/model.pt] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import DetectionDataset, ImageRecord
from fabricdet.data.synth import render_sample
from fabricdet.data.tiling import Tile, tile_grid
from fabricdet.engine.tile_merge import MergeConfig, merge_detections
from fabricdet.engine.tiled import TileOutputs, detect_tiles
from fabricdet.metrics import Predictions, coco_metrics

LONG = [10, 8, 9, 11, 12, 17, 6]  # warps along y, wefts/spandex/centipede along x
SHORT = [4, 1, 7]
SIZE = (2446, 1000)

ARMS: list[tuple[str, MergeConfig]] = [
    ("sinkhorn", MergeConfig(method="sinkhorn")),
    ("sinkhorn (iou+nwd)", MergeConfig(method="sinkhorn", nms_options={})),
    ("greedy", MergeConfig(method="greedy")),
    ("nmm", MergeConfig(method="nmm")),
    ("wbf", MergeConfig(method="wbf")),
]


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    boxes: np.ndarray  # [G, 4] ground truth
    labels: np.ndarray  # [G]
    record: ImageRecord


def make_samples(n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        cats = [int(c) for c in rng.choice(LONG, size=2, replace=False)]
        cats.append(int(rng.choice(SHORT)))
        image, instances = render_sample(seed, k, SIZE, categories=cats)
        boxes = np.array([i.box for i in instances], np.float32).reshape(-1, 4)
        labels = np.array([i.category_id - 1 for i in instances], np.int64)
        record = ImageRecord(k + 1, f"{k}.jpg", SIZE[0], SIZE[1], list(instances))
        out.append(Sample(image, boxes, labels, record))
    return out


def _jitter(rng: np.random.Generator, w: float, h: float, cut: np.ndarray, copy: int) -> np.ndarray:
    """Offsets of the four sides: a cut side 0-2 px inward, the others normal (3 % of the
    side up to 256 px, + 1 px; doubled for a duplicate)."""
    inward = np.array([1.0, 1.0, -1.0, -1.0])
    sides = np.array([w, h, w, h])
    free = rng.normal(0.0, (0.03 * np.minimum(sides, 256.0) + 1.0) * (1 + copy))
    return np.where(cut, inward * rng.uniform(0.0, 2.0, 4), free).astype(np.float32)


def oracle_tiles(sample: Sample, tiles: list[Tile], rng: np.random.Generator) -> TileOutputs:
    """The oracle-with-noise detector on every tile (module docstring)."""
    boxes, scores, labels, index = [], [], [], []
    for t_i, t in enumerate(tiles):
        frame = np.array([t.x0, t.y0, t.x1, t.y1], np.float32)
        for gt, label in zip(sample.boxes, sample.labels, strict=True):
            c = np.concatenate([np.maximum(gt[:2], frame[:2]), np.minimum(gt[2:], frame[2:])])
            w, h = c[2] - c[0], c[3] - c[1]
            if w <= 0 or h <= 0 or rng.random() < 0.05:
                continue
            cut = np.concatenate([c[:2] > gt[:2], c[2:] < gt[2:]])
            if (cut[[0, 2]].any() and w < 4) or (cut[[1, 3]].any() and h < 4):
                continue
            copies = 2 if rng.random() < 0.3 else 1
            for copy in range(copies):
                d = _jitter(rng, float(w), float(h), cut, copy)
                b = np.clip(c + d, frame[[0, 1, 0, 1]], frame[[2, 3, 2, 3]])
                if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                    continue
                boxes.append(b)
                scores.append(rng.uniform(0.5, 1.0) * (0.7 if copy else 1.0))
                labels.append(label)
                index.append(t_i)
        for _ in range(rng.poisson(0.5)):
            x, y = rng.uniform(t.x0, t.x1 - 20), rng.uniform(t.y0, t.y1 - 20)
            boxes.append(np.array([x, y, x + rng.uniform(8, 60), y + rng.uniform(8, 60)]))
            scores.append(rng.uniform(0.05, 0.4))
            labels.append(int(rng.integers(0, len(TIANCHI_CATEGORIES))))
            index.append(t_i)
    return TileOutputs(
        torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(index, dtype=torch.long),
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9), inter / np.maximum(
        area_b[None], 1e-9
    )


def crossing_stats(
    samples: list[Sample], preds: list[tuple[np.ndarray, np.ndarray]], tiles: list[Tile]
) -> tuple[float, float]:
    """(share of seam-crossing GT found whole at IoU 0.7, mean boxes lying on each)."""
    whole, pieces, count = 0, 0, 0
    seams_x = sorted({t.x0 for t in tiles if t.x0 > 0} | {t.x1 for t in tiles if t.x1 < SIZE[0]})
    seams_y = sorted({t.y0 for t in tiles if t.y0 > 0} | {t.y1 for t in tiles if t.y1 < SIZE[1]})
    for s, (boxes, labels) in zip(samples, preds, strict=True):
        for gt, label in zip(s.boxes, s.labels, strict=True):
            crosses = any(gt[0] < x < gt[2] for x in seams_x) or any(
                gt[1] < y < gt[3] for y in seams_y
            )
            if not crosses:
                continue
            count += 1
            same = boxes[labels == label]
            if len(same) == 0:
                continue
            iou, on_gt = _iou(gt[None], same)
            whole += bool((iou >= 0.7).any())
            pieces += int((on_gt[0] >= 0.5).sum())
    return whole / max(count, 1), pieces / max(count, 1)


def evaluate(
    samples: list[Sample],
    pooled: list[TileOutputs],
    grids: list[list[Tile]],
    config: MergeConfig,
    seam_tiles: list[Tile],
) -> dict[str, float]:
    image_ids, cats, boxes, scores, per_image = [], [], [], [], []
    start = time.perf_counter()
    merged = [
        merge_detections(p.boxes, p.scores, p.labels, p.tile_index, g, config)
        for p, g in zip(pooled, grids, strict=True)
    ]
    ms = 1000 * (time.perf_counter() - start) / len(samples)
    for s, det in zip(samples, merged, strict=True):
        b, lab = det.boxes.numpy(), det.labels.numpy()
        image_ids.append(np.full(len(lab), s.record.image_id))
        cats.append(lab + 1)
        boxes.append(b)
        scores.append(det.scores.numpy())
        per_image.append((b, lab))
    dataset = DetectionDataset(None, TIANCHI_CATEGORIES, [s.record for s in samples])  # type: ignore[arg-type]
    preds = Predictions(
        np.concatenate(image_ids), np.concatenate(cats), np.concatenate(boxes),
        np.concatenate(scores),
    )  # fmt: skip
    m = coco_metrics(dataset, preds)
    whole, pieces = crossing_stats(samples, per_image, seam_tiles)
    return {"ap": m.ap, "ap50": m.ap50, "ap75": m.ap75, "whole": whole, "pieces": pieces, "ms": ms}


def model_outputs(args, samples, tiles) -> tuple[list[TileOutputs], list[TileOutputs]]:
    from fabricdet.engine.checkpoint import load_model

    loaded = load_model(args.model)
    cfg = loaded.config
    resize = (cfg.data.max_size, cfg.data.size_divisor)
    whole_tile = tile_grid(*SIZE, SIZE[0], SIZE[1])
    ids = np.array([c.id for c in loaded.categories]) - 1
    tiled, whole = [], []
    for s in samples:
        for grid, out in ((tiles, tiled), (whole_tile, whole)):
            p = detect_tiles(
                loaded.model, s.image, grid, resize=resize, score_threshold=0.01, batch_size=4
            )
            out.append(
                TileOutputs(p.boxes, p.scores, torch.from_numpy(ids[p.labels]), p.tile_index)
            )
    return tiled, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--tile", default="640x640", help="tile WxH (H 0: full height)")
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--model", default=None, help="trained model.pt (default: the oracle)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tw, th = (int(v) for v in args.tile.lower().split("x"))
    tiles = tile_grid(*SIZE, tw, th or None, overlap=args.overlap)
    whole_grid = tile_grid(*SIZE, SIZE[0], SIZE[1])
    start = time.perf_counter()
    samples = make_samples(args.images, args.seed)
    n_gt = sum(len(s.boxes) for s in samples)
    print(f"{len(samples)} images {SIZE[0]}x{SIZE[1]}, {n_gt} defects, {len(tiles)} tiles of "
          f"{tw}x{th or SIZE[1]} overlap {args.overlap}; rendered in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if args.model:
        tiled, whole = model_outputs(args, samples, tiles)
        source = f"model {args.model}"
    else:
        rng = np.random.default_rng(args.seed + 1)
        tiled = [oracle_tiles(s, tiles, rng) for s in samples]
        whole = [oracle_tiles(s, whole_grid, rng) for s in samples]
        source = "oracle with noise"
    print(f"\ndetector: {source}\n")
    print(
        "| inference | merge | stitch | AP | AP50 | AP75 | whole@0.7 | boxes/cut | merge ms/img |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [("whole image", name, cfg, whole, whole_grid) for name, cfg in ARMS[:3]]
    for name, cfg in ARMS:
        for stitch in (True, False):
            rows.append(
                ("tiled", name, MergeConfig(**{**cfg.__dict__, "stitch": stitch}), tiled, tiles)
            )
    for kind, name, cfg, pooled, grid in rows:
        r = evaluate(samples, pooled, [grid] * len(samples), cfg, tiles)
        stitch = "-" if kind == "whole image" else ("yes" if cfg.stitch else "no")
        print(
            f"| {kind} | {name} | {stitch} | {r['ap']:.3f} | {r['ap50']:.3f} | {r['ap75']:.3f} "
            f"| {r['whole']:.2f} | {r['pieces']:.2f} | {r['ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
