"""What the set loss sees on trained models: how far SinkhornNMS' soft plan is from its target.

Runs each model in training mode (the plan at the final, annealed eps) on the first ``--images``
training images that hold defects, with the set loss' own matching, and prints per model:

- matched: the share of objects the set loss matches to a slot (fused box of the object's
  class overlapping it by at least the criterion's ``min_iou``);
- for the matched slots, the mean seed score, keep probability (the mass the seed keeps in its
  own slot), and IoU of the fused box: the keep loss pushes score x keep probability to 1;
- duplicates: unmatched slots whose box overlaps an object by IoU > 0.5, per image, and their
  mean keep probability: the keep loss pushes it to 0;
- the keep loss' two parts: positives per object, negatives per slot (as in training);
- the norm of each loss term's gradient on the model's parameters (mean over batches), and of
  the keep loss' gradient through the plan alone (the scores held constant where the loss
  multiplies them by the keep probability, ``SetCriterion(scores="none")``);
- what the appearance term reads: the embedding dissimilarity ``1 - cos`` of candidate-seed
  pairs of one class that overlap by IoU >= the NMS threshold (the pairs the spatial term
  cannot separate), split into duplicates (both boxes on the same object) and neighbours (on
  two different objects), with the share beyond ``feature_margin``, where the term starts to
  cost: the term works when neighbours lie beyond it and duplicates within; and, for every two
  objects in one image, the dissimilarity of their candidates' mean embeddings, for objects of
  one class and of two classes (what the embedding tells apart).

A model trained without the set loss is measured with the same criterion: what the plan does
on candidates no one trained it on.

    python benchmarks/set_loss_stats.py DATA RUN [RUN ...] [--images 48]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from fabricdet.data.formats.detect import load_dataset
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.data import TorchDetectionDataset, collate, select_split
from fabricdet.models.candidates import select_candidates
from fabricdet.models.set_loss import SetCriterion
from fabricdet.ops import SinkhornNMSOutput


@dataclass
class Tally:
    """Sums over the images seen; :meth:`row` turns them into means."""

    images: int = 0
    objects: int = 0
    matched: int = 0
    score: float = 0.0
    keep: float = 0.0
    iou: float = 0.0
    duplicates: int = 0
    duplicate_keep: float = 0.0
    positive_bce: float = 0.0
    negative_bce: float = 0.0
    slots: int = 0
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    # pair kind ("duplicate", "neighbour"; "same class", "other class" for object means) ->
    # dissimilarities of its pairs
    dissim: dict[str, list[Tensor]] = field(default_factory=dict)

    def appearance_row(self, margin: float) -> list[str]:
        cells = []
        for kind in ("duplicate", "neighbour", "same class", "other class"):
            d = torch.cat(self.dissim.get(kind, [torch.zeros(0)]))
            mean = f"{float(d.mean()):.3f}" if len(d) else "-"
            if kind in ("duplicate", "neighbour"):
                share = f"{float((d > margin).float().mean()):.0%}" if len(d) else "-"
                cells += [f"{len(d) / max(self.images, 1):.1f}", mean, share]
            else:
                cells += [str(len(d)), mean]
        return cells

    def row(self) -> list[str]:
        m = max(self.matched, 1)
        return [
            f"{self.matched / max(self.objects, 1):.0%}",
            f"{self.score / m:.3f}",
            f"{self.keep / m:.3f}",
            f"{self.iou / m:.3f}",
            f"{self.duplicates / max(self.images, 1):.1f}",
            f"{self.duplicate_keep / max(self.duplicates, 1):.3f}",
            f"{self.positive_bce / max(self.objects, 1):.3f}",
            f"{self.negative_bce / max(self.slots, 1):.4f}",
        ]


class Recording:
    """Stands in for the detector's criterion: tallies what it sees, then computes the loss."""

    def __init__(self, criterion: SetCriterion, tally: Tally) -> None:
        self.criterion = criterion
        self.tally = tally
        self.through_plan = SetCriterion(
            criterion.keep_weight, criterion.box_weight, criterion.min_iou, scores="none"
        )
        self.plan_only_keep: Tensor | None = None

    def __call__(self, out: SinkhornNMSOutput, targets: list[dict[str, Tensor]]) -> dict:
        t = self.tally
        for b, target in enumerate(targets):
            matched = self.criterion.match(out, b, target["boxes"], target["labels"])
            hit = matched >= 0
            slots = matched[hit]
            valid = out.slot_mask[b]
            scores, keep = out.scores[b].detach(), out.keep_prob[b].detach()
            goal = torch.zeros_like(keep)
            goal[slots] = 1.0
            confidence = (scores * keep).clamp(1e-6, 1 - 1e-6)
            bce = F.binary_cross_entropy(confidence, goal, reduction="none")
            overlap = box_iou(out.boxes[b].detach(), target["boxes"])
            duplicate = valid & (goal == 0) & (overlap.max(1).values > 0.5)
            t.images += 1
            t.objects += len(matched)
            t.matched += len(slots)
            t.score += float(scores[slots].sum())
            t.keep += float(keep[slots].sum())
            t.iou += float(overlap[slots, hit.nonzero().squeeze(1)].sum())
            t.duplicates += int(duplicate.sum())
            t.duplicate_keep += float(keep[duplicate].sum())
            t.positive_bce += float(bce[slots].sum())
            t.negative_bce += float(bce[valid & (goal == 0)].sum())
            t.slots += int(valid.sum())
        self.plan_only_keep = self.through_plan(out, targets)["set_keep"]
        return self.criterion(out, targets)


@torch.no_grad()
def tally_appearance(model: Any, batch: Any, tally: Tally) -> None:
    """Add the dissimilarities of the overlapping candidate-seed pairs of ``batch``."""
    cfg = model.cfg
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in batch.images]
    out = model.head(model.features(model._batch(batch.images)))
    cand = select_candidates(out, sizes, cfg.set_topk, score_thresh=0.0)
    if not cand.embeddings.shape[-1]:
        return
    theta = cfg.sinkhorn.iou_threshold
    for b, target in enumerate(batch.targets):
        m = cand.mask[b]
        boxes, labels = cand.boxes[b][m], cand.labels[b][m]
        emb = F.normalize(cand.embeddings[b][m], dim=-1)
        seeds = cand.scores[b][m].argsort(descending=True)[: cfg.slots]
        best, owner = box_iou(boxes, target["boxes"]).max(1)
        on_object = best >= 0.5  # the box covers an object: its owner is known
        pair = (box_iou(boxes, boxes[seeds]) >= theta) & (labels[:, None] == labels[seeds])
        pair &= torch.arange(len(boxes))[:, None] != seeds[None, :]  # not the seed itself
        pair &= on_object[:, None] & on_object[seeds][None, :]
        dissim = 1.0 - emb @ emb[seeds].T
        same = owner[:, None] == owner[seeds][None, :]
        for kind, where in (("duplicate", pair & same), ("neighbour", pair & ~same)):
            tally.dissim.setdefault(kind, []).append(dissim[where])
        objects = [g for g in range(len(target["boxes"])) if bool((on_object & (owner == g)).any())]
        if len(objects) < 2:
            continue
        means = torch.stack([emb[on_object & (owner == g)].mean(0) for g in objects])
        means = F.normalize(means, dim=-1)
        classes = target["labels"][objects]
        one_class = classes[:, None] == classes[None, :]
        upper = torch.ones_like(one_class).triu(1)  # each pair of objects once
        apart = 1.0 - means @ means.T
        tally.dissim.setdefault("same class", []).append(apart[upper & one_class])
        tally.dissim.setdefault("other class", []).append(apart[upper & ~one_class])


def measure(run: Path, data: Path, images: int) -> Tally:
    loaded = load_model(run)
    model, cfg = loaded.model, loaded.config
    tally = Tally()
    model.cfg.set_loss = True  # measured the same way whether or not it trained with it
    recording = Recording(model.criterion, tally)
    model.criterion = recording
    params = [q for q in model.parameters() if q.requires_grad]
    model.train()
    model.set_epoch_progress(1.0)
    train = select_split(load_dataset(data), cfg.data.train_split)
    samples = TorchDetectionDataset(train, cfg.data)
    chosen = [i for i, rec in enumerate(train.images) if rec.instances][:images]
    for start in range(0, len(chosen), cfg.train.batch_size):
        # seed 0: the same (deterministic) augmentation of each image for every model
        batch = collate([samples[(i, 0)] for i in chosen[start : start + cfg.train.batch_size]])
        tally_appearance(model, batch, tally)
        losses = model(batch.images, batch.targets)
        # weighted as in training (ramp over: set_loss_weight)
        assert recording.plan_only_keep is not None
        plan_only = model.cfg.set_loss_weight * recording.plan_only_keep
        losses["set_keep, through the plan"] = plan_only
        for name, loss in losses.items():
            if not loss.requires_grad:  # through a plan held constant (set_loss_plan_grad=none)
                tally.grad_norms.setdefault(name, []).append(0.0)
                continue
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            norm = sum(float(g.pow(2).sum()) for g in grads if g is not None) ** 0.5
            tally.grad_norms.setdefault(name, []).append(norm)
    return tally


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--images", type=int, default=48)
    args = p.parse_args()
    torch.manual_seed(0)
    head = ["run", "matched", "score", "keep", "IoU", "dups/image", "dup keep", "pos BCE/obj",
            "neg BCE/slot"]  # fmt: skip
    tallies = {run: measure(run, args.data, args.images) for run in args.runs}
    margins = {run: load_model(run).model.cfg.sinkhorn.feature_margin for run in args.runs}
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for run, tally in tallies.items():
        print("| " + " | ".join([str(run), *tally.row()]) + " |")
    names = list(next(iter(tallies.values())).grad_norms)
    print("\nGradient norm on the parameters, per loss term (mean over batches)\n")
    print("| run | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1))
    for run, tally in tallies.items():
        cells = [f"{statistics.mean(tally.grad_norms[n]):.2f}" for n in names]
        print(f"| {run} | " + " | ".join(cells) + " |")
    print("\nAppearance term: dissimilarity of candidate-seed pairs overlapping by IoU >= the")
    print("NMS threshold, per image, mean, share beyond feature_margin; two objects' mean")
    print("embeddings, number of pairs and mean dissimilarity\n")
    head = ["run", "margin", "duplicates", "mean", "beyond", "neighbours", "mean", "beyond",
            "objects, one class", "mean", "two classes", "mean"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for run, tally in tallies.items():
        cells = [str(run), f"{margins[run]}", *tally.appearance_row(margins[run])]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
