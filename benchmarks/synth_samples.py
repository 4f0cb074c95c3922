"""Sample pictures of the synthetic generator for the README (written to docs/images/).

    python benchmarks/synth_samples.py [--out docs/images]

- ``synth_sample_{1..4}.png``: full 2446x1000 images, downscaled, masks tinted and boxes drawn;
- ``synth_crop.png``: a crop at full resolution: threads, two parallel broken warps a yarn
  apart (two objects), a knot and a nep;
- ``synth_crop_masks.png``: the same crop with the exact masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import Instance
from fabricdet.data.synth import SynthConfig, render_sample
from fabricdet.data.synth.camera import fabric_padding
from fabricdet.data.synth.scene import PlannedDefect, compose, image_rng

SIZE = (2446, 1000)
NAMES = {c.id: c.name for c in TIANCHI_CATEGORIES}
# (seed, index, categories) of the overview images: thread defects, spots, surface marks, bars.
OVERVIEW = [
    (1, 0, [10, 8, 1, 2]),
    (2, 1, [12, 3, 16, 5]),
    (3, 2, [18, 6, 14, 13]),
    (4, 3, [17, 19, 11, 20]),
]
COLOURS = [(230, 60, 60), (60, 200, 80), (60, 120, 240), (240, 180, 40), (200, 70, 220)]


def _decode(inst: Instance) -> np.ndarray:
    rle = {"size": inst.mask["size"], "counts": inst.mask["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


def annotate(image: np.ndarray, instances: list[Instance], scale: float) -> np.ndarray:
    """Masks tinted, boxes and names drawn, resized by ``scale`` (image: [H, W, 3] uint8 RGB)."""
    out = image.astype(np.float32)
    for k, inst in enumerate(instances):
        colour = np.array(COLOURS[k % len(COLOURS)], np.float32)
        m = _decode(inst)
        out[m] = 0.6 * out[m] + 0.4 * colour
    out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.clip(out, 0, 255).astype(np.uint8)
    for k, inst in enumerate(instances):
        colour = COLOURS[k % len(COLOURS)]
        x1, y1, x2, y2 = (round(v * scale) for v in inst.box)
        cv2.rectangle(out, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), colour, 2)
        label = f"{inst.category_id} {NAMES[inst.category_id]}"
        ty = y1 - 4 if y1 > 14 else min(y2 + 12, out.shape[0] - 2)
        tx = min(x1, out.shape[1] - 8 * len(label))
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(out, label, (tx, ty), font, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (tx, ty), font, 0.45, colour, 1, cv2.LINE_AA)
    return out


def save_png(image: np.ndarray, path: Path, colours: int = 96) -> None:
    """Palette PNG: woven texture is noisy, full-colour PNGs of it are large."""
    Image.fromarray(image).quantize(colours, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def crop_scene() -> tuple[np.ndarray, list[Instance]]:
    """Twin broken warps a yarn apart, a thick warp, a knot and a nep in a 2446x1000 image."""
    config = SynthConfig(max_rotation_deg=0.3, patterned_fraction=0.0)
    px, py = fabric_padding(SIZE, config.max_rotation_deg)
    cx, cy = px + 1200.0, py + 500.0
    plan = [
        PlannedDefect(10, "断经", 7, (cx, cy)),
        PlannedDefect(10, "断经", 7, (cx, cy), 1),
        PlannedDefect(8, "粗经", 9, (cx + 120, cy)),
        PlannedDefect(4, "结头", 21, (cx + 60, cy - 60)),
        PlannedDefect(7, "毛粒", 13, (cx - 70, cy + 60)),
    ]
    return compose(image_rng(20, 0), SIZE, config, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for k, (seed, index, cats) in enumerate(OVERVIEW, start=1):
        image, instances = render_sample(seed, index, SIZE, categories=cats)
        save_png(annotate(image, instances, 0.36), args.out / f"synth_sample_{k}.png")
    image, instances = crop_scene()
    x0, y0, w, h = 1040, 380, 420, 240
    window = (slice(y0, y0 + h), slice(x0, x0 + w))
    save_png(image[window], args.out / "synth_crop.png", 256)
    masked = annotate(image, instances, 1.0)[window]
    save_png(masked, args.out / "synth_crop_masks.png", 256)


if __name__ == "__main__":
    main()
