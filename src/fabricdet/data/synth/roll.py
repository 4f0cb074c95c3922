"""A synthetic roll: one long strip of fabric, cut into consecutive camera frames.

The strip is rendered in one piece (one fabric, one weave, one camera), so threads and
defects run on unbroken from frame to frame; about half of the defects are moved onto a frame
boundary so that they cross it, and warp defects (along the roll) often run over several
frames. The ground truth is in roll coordinates: pixels of the strip (x across the roll, y
along it, frame ``k`` holding rows ``k * frame_height .. (k + 1) * frame_height - 1``) and,
with the camera's pitch, millimetres across and metres along the roll::

    OUT/frames/frame_000000.jpg ...   consecutive frames, in roll order by name
    OUT/roll.json                     the roll's size and pitch, and every defect

``roll.json``: ``{"width_px", "length_px", "frame_width", "frame_height", "mm_per_px_x",
"mm_per_px_y", "width_m", "length_m", "frames": [names], "defects": [{"category_id",
"category", "raw_name", "box_px": [x1, y1, x2, y2], "start_m", "end_m", "across_mm": [x1, x2],
"frames": [first, last]}]}``; boxes are tight pixel-edge boxes of the exact masks.

The strip is held in memory while rendered (about 45 bytes per pixel at the peak), so a roll
is limited to :data:`MAX_ROLL_PIXELS`; longer inspections are several rolls.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fabricdet.data.categories import TIANCHI_CATEGORIES
from fabricdet.data.dataset import Instance
from fabricdet.data.formats.atomic import atomic_write, atomic_write_json
from fabricdet.data.synth.camera import encode_jpeg, fabric_padding
from fabricdet.data.synth.config import SynthConfig, SynthError
from fabricdet.data.synth.scene import PlannedDefect, compose, image_rng, plan_defects

FRAMES_DIR = "frames"
ROLL_FILE = "roll.json"
#: Largest strip rendered (pixels): about 2.5 GB at the peak.
MAX_ROLL_PIXELS = 60_000_000


@dataclass(frozen=True)
class RollTruth:
    """A synthetic roll's geometry and defects.

    Attributes:
        frame_width, frame_height: frame size in pixels (the roll is ``frame_width`` wide).
        num_frames: consecutive frames; the roll is ``num_frames * frame_height`` rows long.
        mm_per_px_x, mm_per_px_y: camera pitch across and along the roll.
        instances: the defects, boxes xyxy in roll pixels (masks: COCO RLE of the strip).
        frames: frame file names (relative to the roll folder), in roll order.
    """

    frame_width: int
    frame_height: int
    num_frames: int
    mm_per_px_x: float
    mm_per_px_y: float
    instances: tuple[Instance, ...]
    frames: tuple[str, ...] = ()

    @property
    def length_px(self) -> int:
        return self.num_frames * self.frame_height

    @property
    def length_m(self) -> float:
        return self.length_px * self.mm_per_px_y / 1000.0

    @property
    def width_m(self) -> float:
        return self.frame_width * self.mm_per_px_x / 1000.0

    def to_json(self) -> dict[str, Any]:
        names = {c.id: c.name for c in TIANCHI_CATEGORIES}
        defects = []
        for inst in self.instances:
            x1, y1, x2, y2 = inst.box
            defects.append(
                {
                    "category_id": inst.category_id,
                    "category": names.get(inst.category_id, str(inst.category_id)),
                    "raw_name": inst.raw_name,
                    "box_px": [x1, y1, x2, y2],
                    "start_m": round(y1 * self.mm_per_px_y / 1000.0, 6),
                    "end_m": round(y2 * self.mm_per_px_y / 1000.0, 6),
                    "across_mm": [round(x1 * self.mm_per_px_x, 3), round(x2 * self.mm_per_px_x, 3)],
                    "frames": [int(y1 // self.frame_height), int((y2 - 1) // self.frame_height)],
                }
            )
        return {
            "width_px": self.frame_width,
            "length_px": self.length_px,
            "frame_width": self.frame_width,
            "frame_height": self.frame_height,
            "mm_per_px_x": self.mm_per_px_x,
            "mm_per_px_y": self.mm_per_px_y,
            "width_m": self.width_m,
            "length_m": self.length_m,
            "frames": list(self.frames),
            "defects": defects,
        }


def _onto_boundaries(
    rng: np.random.Generator,
    plan: list[PlannedDefect],
    frame_height: int,
    num_frames: int,
    top: int,
    prob: float,
) -> list[PlannedDefect]:
    """Move about ``prob`` of the defects (a twin with its partner) onto a frame boundary."""
    if num_frames < 2:
        return plan
    out: list[PlannedDefect] = []
    for defect in plan:
        if defect.twin_offset and out and out[-1].seed == defect.seed:
            out.append(replace(defect, anchor=out[-1].anchor))
            continue
        if rng.random() < prob:
            row = defect.anchor[1] - top
            k = int(np.clip(round(row / frame_height), 1, num_frames - 1))
            jitter = float(rng.normal(0.0, 3.0))
            defect = replace(defect, anchor=(defect.anchor[0], top + k * frame_height + jitter))
        out.append(defect)
    return out


def render_roll(
    seed: int,
    frame_size: tuple[int, int],
    num_frames: int,
    config: SynthConfig | None = None,
    boundary_prob: float = 0.5,
) -> tuple[np.ndarray, list[Instance]]:
    """Render a strip of ``num_frames`` frames and its defects.

    Each frame gets defects with probability ``1 - config.defect_free_fraction`` (drawn as for
    one image), placed within it; then about ``boundary_prob`` of them move onto a boundary.
    The strip is square to the camera (no skew: a roll runs straight through the line).

    Args:
        seed: the roll's seed (same seed and sizes, same strip).
        frame_size: frame ``(width, height)``.

    Returns:
        strip (ndarray[num_frames * H, W, 3] uint8) RGB, and its defects in strip pixels.

    Raises:
        SynthError: sizes too small, or a strip over :data:`MAX_ROLL_PIXELS`.
    """
    config = replace(config or SynthConfig(), max_rotation_deg=0.0)
    config.validate()
    width, frame_height = frame_size
    if width < 32 or frame_height < 32 or num_frames < 1:
        raise SynthError(
            f"a roll needs frames of at least 32x32 and at least 1 frame, got "
            f"{width}x{frame_height} and {num_frames}"
        )
    size = (width, frame_height * num_frames)
    if size[0] * size[1] > MAX_ROLL_PIXELS:
        raise SynthError(
            f"a roll of {size[0]}x{size[1]} pixels is over the {MAX_ROLL_PIXELS:,} rendered at "
            "once; choose a shorter roll, a coarser --mm-per-px or narrower frames"
        )
    rng = image_rng(seed, 0)
    px, py = fabric_padding(size, 0.0)
    plan: list[PlannedDefect] = []
    for k in range(num_frames):
        if rng.random() >= config.defect_free_fraction:
            bounds = (px, py + k * frame_height, px + width, py + (k + 1) * frame_height)
            plan += plan_defects(rng, config, bounds)
    plan = _onto_boundaries(rng, plan, frame_height, num_frames, py, boundary_prob)
    return compose(rng, size, config, plan)


def generate_roll(
    out_dir: Path | str,
    length_m: float,
    *,
    seed: int = 0,
    frame_size: tuple[int, int] = (2446, 1000),
    mm_per_px: tuple[float, float] = (0.2, 0.2),
    config: SynthConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RollTruth:
    """Write a synthetic roll of at least ``length_m`` metres (module docstring layout).

    Args:
        out_dir: output folder; must not hold a roll unless ``overwrite``.
        length_m: roll length; rounded up to whole frames.
        frame_size: frame ``(width, height)`` in pixels (e.g. 2446x1000 area-camera frames or
            4096x256 line-scan frames).
        mm_per_px: camera pitch ``(across, along)`` in millimetres per pixel.

    Returns:
        The roll's ground truth (also in ``out_dir/roll.json``, written last, atomically).

    Raises:
        SynthError: a bad length or pitch, an occupied folder, or a roll too large to render.
    """
    if not (math.isfinite(length_m) and length_m > 0):
        raise SynthError(f"roll length {length_m} m: expected a positive number of metres")
    if not all(math.isfinite(v) and v > 0 for v in mm_per_px):
        raise SynthError(f"pitch {mm_per_px} mm/px: expected positive numbers")
    out_dir = Path(out_dir)
    frames_dir = out_dir / FRAMES_DIR
    if (frames_dir.exists() or (out_dir / ROLL_FILE).exists()) and not overwrite:
        raise SynthError(
            f"{out_dir} already holds a roll; choose an empty folder or pass --overwrite"
        )
    config = config or SynthConfig()
    frame_height = frame_size[1]
    num_frames = max(1, math.ceil(length_m * 1000.0 / mm_per_px[1] / frame_height - 1e-9))
    strip, instances = render_roll(seed, frame_size, num_frames, config)
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    (out_dir / ROLL_FILE).unlink(missing_ok=True)
    frames_dir.mkdir(parents=True)
    quality = int(np.mean(config.jpeg_quality))
    names = []
    for k in tqdm(range(num_frames), desc="roll", unit="frame", disable=not progress):
        name = f"{FRAMES_DIR}/frame_{k:06d}.jpg"
        data = encode_jpeg(strip[k * frame_height : (k + 1) * frame_height], quality)
        atomic_write(out_dir / name, lambda f, data=data: f.write(data), fsync=False)
        names.append(name)
    truth = RollTruth(
        frame_size[0],
        frame_height,
        num_frames,
        float(mm_per_px[0]),
        float(mm_per_px[1]),
        tuple(instances),
        tuple(names),
    )
    atomic_write_json(out_dir / ROLL_FILE, truth.to_json())
    return truth
