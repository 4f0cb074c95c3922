"""Which ground-truth defects would an NMS merge, even with perfect boxes?

For every pair of same-class objects in one image, the spatial similarity SinkhornNMS would
see if the detector predicted both boxes exactly. A pair at or above the IoU threshold competes
for one slot: without embeddings that tell the two apart, one of them is lost. Counted for IoU
(what greedy NMS uses), for SinkhornNMS' default similarity (the larger of IoU and the
size-normalised Gaussian-Wasserstein similarity) and, for comparison, for a Gaussian-Wasserstein
similarity normalised by the longest side (the former default).

    python benchmarks/pair_separation.py DATA [--iou-threshold 0.5]

DATA is any dataset fabricdet reads (e.g. ``fabricdet-demo/data``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fabricdet.data.formats import load_dataset
from fabricdet.ops.boxes import NWD_SCALE, pairwise_iou, pairwise_overlap


def longest_side_nwd(boxes: torch.Tensor, scale: float = 0.1) -> torch.Tensor:
    """``exp(-W2 / (scale * L))``, ``L`` the pair's longest side: ``Tensor[N, 4] -> [N, N]``."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    w2 = ((c[:, None] - c[None]) ** 2).sum(-1) + ((wh[:, None] - wh[None]) ** 2).sum(-1) / 4
    longest = wh.amax(-1)
    return torch.exp(-w2.sqrt() / (scale * torch.maximum(longest[:, None], longest[None])))


SIMILARITIES = {
    "IoU (greedy NMS)": lambda b: pairwise_iou(b, b),
    f"max(IoU, NWD / sqrt(wh), scale {NWD_SCALE}) (SinkhornNMS default)": lambda b: (
        pairwise_overlap(b, b, "iou+nwd")
    ),
    "max(IoU, NWD / longest side, scale 0.1)": lambda b: torch.maximum(
        pairwise_iou(b, b), longest_side_nwd(b)
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    pairs = 0
    merged = dict.fromkeys(SIMILARITIES, 0)
    for record in dataset.images:
        if len(record.instances) < 2:
            continue
        boxes = torch.tensor([i.box for i in record.instances], dtype=torch.float64)
        labels = torch.tensor([i.category_id for i in record.instances])
        n = len(boxes)
        upper = torch.ones(n, n, dtype=torch.bool).triu(1)
        same = (labels[:, None] == labels[None]) & upper
        pairs += int(same.sum())
        for name, similarity in SIMILARITIES.items():
            merged[name] += int((same & (similarity(boxes) >= args.iou_threshold)).sum())
    print(f"{len(dataset.images)} images, {pairs} same-class object pairs sharing an image")
    print(f"| similarity | pairs at or above {args.iou_threshold} (merged) | share |")
    print("|---|---|---|")
    for name, count in merged.items():
        print(f"| {name} | {count} | {count / max(pairs, 1):.1%} |")


if __name__ == "__main__":
    main()
