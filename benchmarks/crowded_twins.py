"""Adjacent thin defects in numbers: the ablation's models on a test set crowded with twin threads.

The ablation's adjacent subset holds 16 test images, too few to separate the methods. This
renders (once) a test-only set in which every thread defect has a parallel twin of its class a
few yarns away (``twin_prob`` 1) and every image is defective, at the ablation's frame size,
then scores every model of an ablation folder (``ARM-SEED/model.pt``, from
``benchmarks/nms_ablation.py``) with every NMS method, the models' own settings (medoid boxes
on where they were saved with it), and prints the mean and sample standard deviation over the
seeds of each arm. Per-model results are cached in ``OUT/scores-ARM-SEED.json`` (methods
missing from a cache are scored and added: delete a method's entries to score it again).

    python benchmarks/crowded_twins.py --ablation runs/abl3200 [--out runs/twins-400]
        [--num-images 400] [--size 320x128] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.data.synth import SynthConfig, load_or_generate
from fabricdet.engine.checkpoint import load_model
from fabricdet.engine.evaluate import evaluate
from fabricdet.ops.nms import NMS_METHODS
from nms_ablation import ARMS, adjacent  # benchmarks/ is a folder of scripts, not a package

COLUMNS = ("coco_ap", "coco_ap50", "coco_ap75", "tianchi_score")


def scores(run_dir: Path, dataset: DetectionDataset, cache: Path) -> dict[str, dict[str, float]]:
    """``{NMS method: metrics}`` of one model on the whole set, cached in ``cache``."""
    rows = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [m for m in NMS_METHODS if m not in rows]
    if todo:
        loaded = load_model(run_dir / "model.pt")
        for method in todo:
            res = evaluate(loaded, dataset, split="test", nms=method, progress=False)
            rows[method] = {c: res[c] for c in COLUMNS}
            print(f"{run_dir.name} / {method}: {rows[method]}", flush=True)
        atomic_write_json(cache, rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ablation", type=Path, required=True, help="nms_ablation.py's --out")
    parser.add_argument("--out", type=Path, default=Path("runs/twins-400"))
    parser.add_argument("--num-images", type=int, default=400)
    parser.add_argument("--size", default="320x128")
    parser.add_argument("--seed", type=int, default=7, help="dataset seed")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    crowded = SynthConfig(twin_prob=1.0, defect_free_fraction=0.0)
    dataset = load_or_generate(
        args.out, args.num_images, args.seed, (w, h), config=crowded, splits=(0.0, 0.0, 1.0)
    )
    defects = sum(len(r.instances) for r in dataset.images)
    near = sum(adjacent(r, 8.0) for r in dataset.images)
    print(f"{len(dataset.images)} images, {defects} defects, {near} holding two within 8 px")
    print("| model / NMS | " + " | ".join(COLUMNS) + " | AP per seed |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for arm in ARMS:
        runs = [m.parent for m in sorted(args.ablation.glob(f"{arm}-*/model.pt"))]
        per_seed = [scores(r, dataset, args.out / f"scores-{r.name}.json") for r in runs]
        for method in NMS_METHODS if per_seed else ():
            cells = []
            for c in COLUMNS:
                vals = [s[method][c] for s in per_seed]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
            each = " / ".join(f"{s[method]['coco_ap']:.3f}" for s in per_seed)
            print(f"| {arm} / {method} | " + " | ".join(cells) + f" | {each} |")


if __name__ == "__main__":
    main()
