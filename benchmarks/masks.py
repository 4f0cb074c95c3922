"""Masks from boxes: mask quality per defect family, on the synthetic benchmark's exact masks.

    python benchmarks/masks.py                       # defaults: ~10-15 min on 1 CPU thread
    python benchmarks/masks.py --steps 1500 --size 256 --train-images 1200   # bigger budget
    python benchmarks/masks.py --model RUN/model.pt --data DATA  # end to end, a trained model

What it measures. The detector is weak on a CPU budget, so by default the mask branch is
measured **given the instance box**: every ground-truth box (optionally jittered,
``--eval-jitter``) is an instance, and its predicted mask is compared with the exact mask.
This isolates mask quality from detection quality. Every instance gets score 1, so Mask AP
here is the COCO average over IoU 0.50:0.95 of how many masks reach each IoU. Rows:

- ``box filled``: the box itself as the mask (what a box-only detector can claim);
- ``box-sup raw``: the mask head trained from boxes (projection + texture-suppressed pairwise
  + confidence-weighted self-training), its sigmoid;
- ``box-sup refined``: the same head's output after the entropy-constrained refinement;
- ``full-sup raw`` / ``full-sup refined``: the same head trained on the true masks (upper bound).

Training here optimises the backbone, FPN and mask head on the mask losses only (no
detection losses), on square synthetic images with one defect of a chosen family each.
Columns: Mask AP, mean instance IoU, boundary IoU (2 px band) per family (thin lines,
blobs, holes, bars) and over all; the AUROC of the uncertainty map for predicting the pixels
the thresholded mask gets wrong (pixels of the instance's grid box); with ``--eval-jitter``
box AP75 of the jittered boxes and of boxes re-derived from refined masks.

``--model RUN/model.pt --data DATA`` instead runs ``fabricdet eval``'s evaluation of a
trained detector with a mask head on a dataset with masks (detected boxes, end to end).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.data.formats.rle import decode_mask, encode_mask
from fabricdet.data.synth import render_sample
from fabricdet.masks.roi import boxes_from_masks
from fabricdet.metrics.evaluate import evaluate_predictions
from fabricdet.metrics.predictions import Predictions
from fabricdet.models.config import MaskConfig, ModelConfig
from fabricdet.models.detector import FabricDetector

#: Defect families -> Tianchi category ids rendered for them.
FAMILIES: dict[str, tuple[int, ...]] = {
    "thin": (10, 8, 12, 9),  # broken / thick / loose warp, thick weft
    "blob": (2, 14),  # stains, size spots
    "hole": (1,),
    "bar": (18,),  # density, wavy and shade bars
}


@dataclass
class Sample:
    image: torch.Tensor  # [3, S, S] in [0, 1]
    boxes: torch.Tensor  # [n, 4]
    masks: torch.Tensor  # [n, S, S] uint8
    family: str
    instances: list[Instance]


def render(seed: int, count: int, size: int, families: list[str]) -> list[Sample]:
    """``count`` images per family list entry cycled, one forced defect each."""
    out = []
    for i in range(count):
        fam = families[i % len(families)]
        cats = FAMILIES[fam]
        cat = cats[(i // len(families)) % len(cats)]
        img, inst = render_sample(seed, i, (size, size), categories=[cat])
        if not inst:
            continue
        masks = np.stack([decode_mask(x.mask) for x in inst])  # type: ignore[arg-type]
        out.append(
            Sample(
                torch.from_numpy(img).permute(2, 0, 1).float() / 255.0,
                torch.tensor([x.box for x in inst], dtype=torch.float32),
                torch.from_numpy(masks),
                fam,
                inst,
            )
        )
    return out


def build(args: argparse.Namespace) -> FabricDetector:
    mc = MaskConfig(roi_size=args.roi_size, jitter=args.train_jitter)
    cfg = ModelConfig(width=args.width, fpn_channels=args.fpn, mask_head=True, masks=mc)
    return FabricDetector(cfg, len(TIANCHI_CATEGORIES))


def train(model: FabricDetector, data: list[Sample], args: argparse.Namespace, full: bool) -> None:
    """Backbone + FPN + mask head on the mask losses only (boxes, or true masks if ``full``)."""
    torch.manual_seed(args.seed)
    params = [p for n, p in model.named_parameters() if not n.startswith(("head.", "sinkhorn"))]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    model.train()
    rng = np.random.default_rng(args.seed)
    head = model.mask_head
    assert head is not None
    t0 = time.time()
    for step in range(args.steps):
        pick = rng.choice(len(data), args.batch, replace=False)
        images, targets = [], []
        for k in pick:
            s = data[int(k)]
            img, boxes, masks = s.image, s.boxes.clone(), s.masks
            if rng.random() < 0.5:  # mirrored fabric is still fabric
                img, masks = img.flip(-1), masks.flip(-1)
                w = img.shape[-1]
                boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            t = {"boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.long)}
            if full:
                t["masks"] = masks
            images.append(img)
            targets.append(t)
        batch = model._batch(images)
        feats = model.features(batch)
        losses = head.losses(feats, batch, targets, step / args.steps)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        if (step + 1) % max(1, args.steps // 5) == 0:
            vals = " ".join(f"{k}={float(v.detach()):.3f}" for k, v in losses.items())
            print(f"  step {step + 1}/{args.steps} {vals} ({time.time() - t0:.0f}s)", flush=True)


@torch.no_grad()
def predict(
    model: FabricDetector,
    data: list[Sample],
    args: argparse.Namespace,
    boxes_in: list[torch.Tensor],
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per sample: (raw probs, raw uncertainty) and (refined probs, uncertainty), pasted."""
    model.eval()
    head = model.mask_head
    assert head is not None
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"raw": [], "refined": []}
    for i in range(0, len(data), args.batch):
        chunk = data[i : i + args.batch]
        boxes = boxes_in[i : i + args.batch]
        batch = model._batch([s.image for s in chunk])
        feats = model.features(batch)
        index = torch.cat([torch.full((len(b),), k, dtype=torch.long) for k, b in enumerate(boxes)])
        mo = head(feats, batch, torch.cat(boxes), index)
        raw = mo.logits.sigmoid()
        raw_u = _entropy(raw)
        ref = head.refine(mo)
        start = 0
        for s, b in zip(chunk, boxes, strict=True):
            part = slice(start, start + len(b))
            start += len(b)
            h, w = s.image.shape[-2:]
            for key, p, u in (("raw", raw, raw_u), ("refined", ref.probs, ref.uncertainty)):
                pm = head.paste(p[part], mo.rois[part], h, w)[:, 0].numpy()
                um = head.paste(u[part], mo.rois[part], h, w)[:, 0].numpy()
                out[key].append((pm, um))
    return out


def _entropy(p: torch.Tensor) -> torch.Tensor:
    q = p.clamp(1e-6, 1 - 1e-6)
    return -(q * q.log() + (1 - q) * (1 - q).log()) / np.log(2.0)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (rank statistic)."""
    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average the ranks of ties (a flat uncertainty must score 0.5, not its sort order).
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def dataset_of(data: list[Sample]) -> DetectionDataset:
    images = [
        ImageRecord(k, f"{k}.png", s.image.shape[-1], s.image.shape[-2], s.instances)
        for k, s in enumerate(data)
    ]
    return DetectionDataset(Path("."), tuple(TIANCHI_CATEGORIES), images)


def metrics(
    data: list[Sample],
    masks: list[np.ndarray] | None,
    boxes: list[torch.Tensor],
    uncertainty: list[np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Mask AP, instance IoU, boundary IoU, box AP75 and uncertainty AUROC per family."""
    rows: dict[str, dict[str, float]] = {}
    for fam in [*FAMILIES, "all"]:
        idx = [k for k, s in enumerate(data) if fam in ("all", s.family)]
        if not idx:
            continue
        sub = [data[k] for k in idx]
        ds = dataset_of(sub)
        ids, cats, bx, rles = [], [], [], []
        for j, k in enumerate(idx):
            s = data[k]
            for n, inst in enumerate(s.instances):
                ids.append(j)
                cats.append(inst.category_id)
                bx.append(boxes[k][n].numpy())
                if masks is not None:
                    rles.append(encode_mask(masks[k][n] >= 0.5))
                else:
                    box_mask = np.zeros(s.image.shape[-2:], bool)
                    x1, y1, x2, y2 = (round(float(v)) for v in boxes[k][n])
                    box_mask[max(y1, 0) : y2, max(x1, 0) : x2] = True
                    rles.append(encode_mask(box_mask))
        preds = Predictions(
            np.array(ids), np.array(cats), np.array(bx), np.ones(len(ids)), tuple(rles)
        )
        summ = evaluate_predictions(ds, preds, boundary_d=2)
        row = {
            "mask_ap": summ["mask_ap"],
            "miou": summ["mask_miou"],
            "biou": summ["mask_boundary_iou"],
            "box_ap75": summ["coco_ap75"],
        }
        if uncertainty is not None and masks is not None:
            sc, lb = [], []
            for k in idx:
                s = data[k]
                gt = s.masks.numpy().astype(bool)
                for n in range(len(s.instances)):
                    region = uncertainty[k][n] > 0  # the pasted grid's footprint
                    err = (masks[k][n] >= 0.5) != gt[n]
                    sc.append(uncertainty[k][n][region])
                    lb.append(err[region])
            row["unc_auroc"] = auroc(np.concatenate(sc), np.concatenate(lb))
        rows[fam] = row
    return rows


def jitter_boxes(data: list[Sample], frac: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in data:
        b = s.boxes.clone()
        if frac > 0:
            wh = (b[:, 2:] - b[:, :2]).repeat(1, 2)
            b = b + torch.randn(b.shape, generator=g) * wh * frac
            b = torch.cat([torch.minimum(b[:, :2], b[:, 2:] - 1), b[:, 2:]], 1)
        out.append(b)
    return out


def figure(data: list[Sample], refined: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Image, predicted (refined) mask, uncertainty map and ground truth, one row per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = []
    for fam in FAMILIES:
        k = next((i for i, s in enumerate(data) if s.family == fam), None)
        if k is not None:
            picks.append(k)
    fig, axes = plt.subplots(len(picks), 4, figsize=(8, 2.1 * len(picks)))
    titles = ["image", "refined mask", "uncertainty", "ground truth"]
    for r, k in enumerate(picks):
        s = data[k]
        probs, unc = refined[k]
        panels = [
            s.image.permute(1, 2, 0).numpy(),
            probs.max(0),
            unc.max(0),
            s.masks.numpy().max(0),
        ]
        for c, (ax, im) in enumerate(zip(axes[r], panels, strict=True)):
            cmap = None if c == 0 else ("magma" if c == 2 else "gray")
            ax.imshow(im, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        axes[r][0].set_ylabel(s.family, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    fams = [*FAMILIES, "all"]
    head = "| method | " + " | ".join(f"{f} AP / IoU / bIoU" for f in fams) + " | unc. AUROC |"
    print(head)
    print("|" + "---|" * (len(fams) + 2))
    for name, rows in results.items():
        cells = []
        for f in fams:
            r = rows.get(f)
            cells.append(
                "-" if r is None else f"{r['mask_ap']:.3f} / {r['miou']:.3f} / {r['biou']:.3f}"
            )
        au = rows["all"].get("unc_auroc")
        print(f"| {name} | " + " | ".join(cells) + f" | {'-' if au is None else f'{au:.3f}'} |")


def end_to_end(args: argparse.Namespace) -> None:
    from fabricdet.data.formats import load_dataset
    from fabricdet.engine.checkpoint import load_model
    from fabricdet.engine.evaluate import evaluate

    loaded = load_model(args.model, device="cpu")
    summary = evaluate(loaded, load_dataset(args.data), split=args.split, device="cpu")
    keys = ["coco_ap", "coco_ap75", "mask_ap", "mask_ap50", "mask_miou", "mask_boundary_iou"]
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128, help="square image side")
    p.add_argument("--train-images", type=int, default=480)
    p.add_argument("--test-images", type=int, default=160)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--fpn", type=int, default=32)
    p.add_argument("--roi-size", type=int, default=32)
    p.add_argument("--train-jitter", type=float, default=0.05)
    p.add_argument("--eval-jitter", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-full", action="store_true", help="no fully supervised upper bound")
    p.add_argument("--figure", type=Path, default=Path("docs/images/masks_refinement.png"))
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--model", type=Path, default=None, help="end to end: a trained model.pt")
    p.add_argument("--data", type=Path, default=None, help="end to end: dataset with masks")
    p.add_argument("--split", default="test")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.model is not None:
        end_to_end(args)
        return
    fams = list(FAMILIES)
    t0 = time.time()
    train_set = render(1000 + args.seed, args.train_images, args.size, fams)
    test_set = render(2000 + args.seed, args.test_images, args.size, fams)
    print(
        f"rendered {len(train_set)} train / {len(test_set)} test images ({time.time() - t0:.0f}s)"
    )
    boxes = jitter_boxes(test_set, args.eval_jitter, args.seed)
    results: dict[str, dict[str, dict[str, float]]] = {}
    results["box filled"] = metrics(test_set, None, boxes)
    figure_preds = None
    for full in (False, True):
        if full and args.skip_full:
            continue
        name = "full-sup" if full else "box-sup"
        torch.manual_seed(args.seed)
        model = build(args)
        t1 = time.time()
        print(f"training {name} ({args.steps} steps)")
        train(model, train_set, args, full)
        print(f"  trained in {time.time() - t1:.0f}s")
        preds = predict(model, test_set, args, boxes)
        for key in ("raw", "refined"):
            masks = [m for m, _ in preds[key]]
            unc = [u for _, u in preds[key]]
            results[f"{name} {key}"] = metrics(test_set, masks, boxes, unc)
        if not full:
            figure_preds = preds["refined"]
            if args.eval_jitter > 0:
                derived = [
                    boxes_from_masks(torch.from_numpy(m), b)
                    for (m, _), b in zip(preds["refined"], boxes, strict=True)
                ]
                results["box-sup refined, boxes from masks"] = metrics(
                    test_set, [m for m, _ in preds["refined"]], derived
                )
    print_table(results)
    if args.eval_jitter > 0:
        for name, rows in results.items():
            print(f"box AP75 {name}: {rows['all']['box_ap75']:.3f}")
    if figure_preds is not None and args.figure:
        figure(test_set, figure_preds, args.figure)
        print(f"figure: {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
