"""How much any NMS can change on a trained detector: what its duplicate removal loses and keeps.

For each model, on one split, the candidates the NMS receives (the model's own score threshold
and top-k) and what each NMS method keeps from them are matched against the objects (same
class, IoU >= each ``--iou``). Per row (``candidates``: before NMS; then each method):

- ``recall@t``: the share of objects with a box at IoU >= t; ``adj recall@t`` the same over the
  adjacent objects (those overlapping or lying within ``--gap`` pixels of another object, the
  parallel threads and neighbours where NMS merges);
- ``lost``: objects that a candidate found (IoU >= the first ``--iou``) and the NMS removed,
  in all and among the adjacent objects: recall that a better duplicate removal could win back
  (an upper bound: the candidate that found it may score too low to matter);
- ``dups/img``: kept boxes that hit an object a higher-scored kept box already hit (the
  precision a better duplicate removal could win back).

Candidates keep every box, so their recall is the ceiling of every NMS on the model. Three more
rows keep greedy NMS' clusters (each kept box with the candidates of its class it overlaps by
IoU >= the NMS threshold) and replace each kept box by another member: ``greedy, box by
quality`` the one the head's IoU-quality branch rates highest (on a model that rescores
with a box-quality head, that head's rating, and the candidates are rescored), ``greedy,
medoid of cluster`` the one with the largest score-weighted IoU with the cluster's members,
``greedy, best box of cluster`` the one overlapping an object most (an oracle: what choosing
each cluster's box better could reach).

    python benchmarks/nms_headroom.py DATA MODEL [MODEL ...] [--split test] [--gap 8]
        [--iou 0.5 0.75] [--no-box-rescoring]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from fabricdet.data.formats.detect import load_dataset
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.data import TorchDetectionDataset, collate, select_split
from fabricdet.models.candidates import select_candidates
from fabricdet.ops.nms import NMS_METHODS
from nms_ablation import adjacent_objects  # benchmarks/ is a folder of scripts, not a package

CANDIDATES = "candidates"
#: Rows that replace each of greedy NMS' kept boxes by a member of its cluster.
PICKS = ("greedy, box by quality", "greedy, medoid of cluster", "greedy, best box of cluster")


def hits(boxes: Tensor, labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> Tensor:
    """IoU of each box with each object of its class, 0 across classes: ``Tensor[N, M]``."""
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return torch.zeros(len(boxes), len(gt_boxes))
    return box_iou(boxes, gt_boxes) * (labels[:, None] == gt_labels[None, :])


def duplicates(iou: Tensor, scores: Tensor, threshold: float) -> int:
    """Boxes hitting (IoU >= ``threshold``) the object of their best hit after a higher-scored
    box has hit it; ``iou (Tensor[N, M])``, ``scores (Tensor[N])``."""
    if iou.numel() == 0:
        return 0
    best, obj = iou.max(1)
    seen: set[int] = set()
    count = 0
    for k in torch.argsort(scores, descending=True).tolist():
        if best[k] >= threshold:
            count += int(obj[k]) in seen
            seen.add(int(obj[k]))
    return count


def cluster_picks(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    quality: Tensor,
    placed: Tensor,
    threshold: float,
    limit: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Greedy NMS' kept indices and, per rule of :data:`PICKS`, the member of each kept box's
    cluster that replaces it. ``boxes (Tensor[N, 4])``, ``scores, quality, placed (Tensor[N])``
    (``placed``: each box's best IoU with an object of its class), ``labels (Tensor[N])``."""
    keep = batched_nms(boxes, scores, labels, threshold)[:limit]
    if len(boxes) == 0:
        return keep, dict.fromkeys(PICKS, keep)
    iou = box_iou(boxes, boxes)
    member = (iou[keep] >= threshold) & (labels[keep, None] == labels[None])
    # The medoid: the member agreeing most (score-weighted IoU) with the rest of its cluster.
    agreement = (member.float() * scores[None]) @ iou  # [K, N]
    rating = {PICKS[0]: quality[None], PICKS[1]: agreement, PICKS[2]: placed[None]}
    return keep, {k: torch.where(member, v, -1.0).argmax(1) for k, v in rating.items()}


class Tally:
    """Per row: objects found at each IoU (all, adjacent), lost, duplicates."""

    def __init__(self, ious: list[float]) -> None:
        self.ious = ious
        self.objects = self.adjacent = self.images = 0
        self.found: dict[str, dict[tuple[float, bool], int]] = defaultdict(lambda: defaultdict(int))
        self.lost: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.dups: dict[str, int] = defaultdict(int)

    def add(self, row: str, found: dict[float, Tensor], adj: Tensor, ceiling: Tensor) -> None:
        for t, f in found.items():
            self.found[row][t, False] += int(f.sum())
            self.found[row][t, True] += int((f & adj).sum())
        lost = ceiling & ~found[self.ious[0]]
        self.lost[row][0] += int(lost.sum())
        self.lost[row][1] += int((lost & adj).sum())

    def table(self) -> list[str]:
        cols = [f"recall@{t}" for t in self.ious] + [f"adj recall@{t}" for t in self.ious]
        lines = [
            "| NMS | " + " | ".join(cols) + " | lost | adj lost | dups/img |",
            "|---" * (len(cols) + 4) + "|",
        ]
        for row, found in self.found.items():
            cells = [found[t, False] / max(self.objects, 1) for t in self.ious]
            cells += [found[t, True] / max(self.adjacent, 1) for t in self.ious]
            lost, adj_lost = self.lost[row]
            lines.append(
                f"| {row} | " + " | ".join(f"{c:.3f}" for c in cells)
                + f" | {lost} | {adj_lost} | {self.dups[row] / max(self.images, 1):.2f} |"
            )  # fmt: skip
        return lines


@torch.no_grad()
def measure(loaded: Any, dataset: Any, split: str, gap: float, ious: list[float]) -> Tally:
    """Run ``loaded``'s model over ``split`` once, every NMS method on the same candidates."""
    model, cfg = loaded.model.eval(), loaded.model.cfg
    subset = select_split(dataset, split)
    data = TorchDetectionDataset(subset, loaded.config.data)
    tally = Tally(ious)
    for start in range(0, len(data), 4):
        batch = collate([data[k] for k in range(start, min(start + 4, len(data)))])
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in batch.images]
        feats = model.features(model._batch(batch.images))
        out = model.head(feats)
        cand = select_candidates(out, sizes, cfg.topk_candidates, cfg.score_thresh)
        box_quality = None
        if model.rescores:
            cand, box_quality = model.rescored(cand, out, feats)  # what its NMS receives
        kept = {}
        for method in NMS_METHODS:
            model.nms_method = method
            kept[method] = model.postprocess(out, sizes, feats)
        for b, target in enumerate(batch.targets):
            gt, gt_labels = target["boxes"], target["labels"]
            adj = adjacent_objects(gt, gap)
            tally.images += 1
            tally.objects += len(gt)
            tally.adjacent += int(adj.sum())
            m = cand.mask[b]
            boxes, labels, scores = cand.boxes[b][m].float(), cand.labels[b][m], cand.scores[b][m]
            rows = {CANDIDATES: (boxes, labels, scores)}
            for method, res in kept.items():
                rows[method] = (res[b]["boxes"], res[b]["labels"], res[b]["scores"])
            assert cand.locations is not None
            quality = (
                out.quality_logits[b].sigmoid()[cand.locations[b][m]]
                if box_quality is None
                else box_quality[b][m]
            )
            placed = hits(boxes, labels, gt, gt_labels).max(1).values if len(gt) else scores * 0
            keep, picks = cluster_picks(
                boxes, scores, labels, quality, placed, cfg.sinkhorn.iou_threshold,
                cfg.detections_per_img,
            )  # fmt: skip
            for name, pick in picks.items():
                rows[name] = (boxes[pick], labels[pick], scores[keep])
            ceiling = None
            for row, (row_boxes, row_labels, row_scores) in rows.items():
                iou = hits(row_boxes.float(), row_labels, gt, gt_labels)
                best = iou.max(0).values if len(row_boxes) else torch.zeros(len(gt))
                found = {t: best >= t for t in ious}
                if ceiling is None:
                    ceiling = found[ious[0]]
                tally.add(row, found, adj, ceiling)
                if row != CANDIDATES:
                    tally.dups[row] += duplicates(iou, row_scores, ious[0])
    model.nms_method = cfg.nms
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--split", default="test")
    parser.add_argument("--gap", type=float, default=8.0)
    parser.add_argument("--iou", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--no-box-rescoring", action="store_true",
                        help="box-quality models: measure them without it")  # fmt: skip
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    for path in args.models:
        loaded = load_model(path)
        loaded.model.cfg.box_quality_rescore = not args.no_box_rescoring
        tally = measure(loaded, dataset, args.split, args.gap, args.iou)
        print(f"\n{path}: {args.split} split, {tally.images} images, {tally.objects} objects, "
              f"{tally.adjacent} adjacent (within {args.gap:g} px of another)")  # fmt: skip
        print("\n".join(tally.table()))


if __name__ == "__main__":
    main()
