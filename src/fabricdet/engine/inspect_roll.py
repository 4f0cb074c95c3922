"""Roll inspection: a detector over a whole roll, defects placed on it in metres, measured
and graded.

The roll (:mod:`fabricdet.engine.roll_source`) is cut into *windows*: bands of
``window_height`` rows (default: one frame) sharing ``overlap`` rows with the next, each band
optionally sliced across its width into tiles (``tile_width``, sharing ``overlap`` columns).
Windows are detected in batches, their detections pooled in roll pixels and merged across
every seam at once (:func:`fabricdet.engine.tile_merge.merge_detections`: pieces of a defect
cut by a window border, e.g. a broken warp running over many frames, become one defect;
duplicates in the overlaps become one). A model with a mask head gives each detection a
mask, kept cropped to the defect (:class:`fabricdet.engine.crop_mask.CropMask`, never a
roll-sized array) and carried through the merge (a joined defect gets the union of its
pieces' masks). Each defect is then measured from its mask
(:func:`fabricdet.inspect.measure_mask`: skeleton length of threads, width, area) or, without
one, from its box (:func:`fabricdet.inspect.measure_box`), with the camera's pitch per axis,
placed by its start along the roll (the 4-point system counts a running defect in the yard
where it starts) and the roll graded (:func:`fabricdet.inspect.grade_roll`).

Resumable: with a ``checkpoint`` file the detections of each finished band are appended to it
(:mod:`fabricdet.engine.roll_checkpoint`); a rerun with the same model, frames and settings
skips the bands already there.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fabricdet.data.tiling import Tile, tile_grid
from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.engine.crop_mask import CropMask
from fabricdet.engine.distributed import resolve_device
from fabricdet.engine.inference import set_nms
from fabricdet.engine.monitor import Progress
from fabricdet.engine.roll_checkpoint import band_line, fingerprint, read_checkpoint
from fabricdet.engine.roll_source import RollFrames
from fabricdet.engine.tile_merge import MergeConfig, merge_detections
from fabricdet.engine.tiled import TileOutputs, detect_tiles
from fabricdet.inspect import DefectMeasure, GradingConfig, RollDefect, RollGrade, grade_roll
from fabricdet.inspect.measure import measure_box, measure_mask


@dataclass(frozen=True)
class RollSettings:
    """How a roll is inspected.

    Attributes:
        mm_per_px_x, mm_per_px_y: camera pitch across and along the roll, mm per pixel.
        window_height: rows per window; None: the first frame's height.
        tile_width: columns per tile; None: the full width (no slicing).
        overlap: rows shared by consecutive windows, and columns by neighbouring tiles.
        batch_size: windows per model call.
        score_threshold: None: the run's ``eval.defect_threshold``.
        nms: the model's own NMS method; None: the run's ``eval.nms``.
        merge: how detections are merged across window seams.
        grading: the 4-point rules.
    """

    mm_per_px_x: float = 0.2
    mm_per_px_y: float = 0.2
    window_height: int | None = None
    tile_width: int | None = None
    overlap: int = 64
    batch_size: int = 4
    score_threshold: float | None = None
    nms: str | None = None
    merge: MergeConfig = field(default_factory=MergeConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)


@dataclass(frozen=True)
class InspectedDefect:
    """One defect on the roll.

    Attributes:
        label, category_id, category: the model label and its category.
        score: confidence.
        box_px: ``(x1, y1, x2, y2)`` in roll pixels.
        start_m, end_m: extent along the roll, metres from its start.
        measure: size (pixels and millimetres) from the mask, or from the box without one
            (``measure.kind == "box"``).
        points: 4-point score (per-defect cap applied).
        frames: first and last frame it lies on (indices into the roll's frames).
        mask: its pixels in roll coordinates, cropped; None for a box-only model.
    """

    label: int
    category_id: int
    category: str
    score: float
    box_px: tuple[float, float, float, float]
    start_m: float
    end_m: float
    measure: DefectMeasure
    points: int
    frames: tuple[int, int]
    mask: CropMask | None = None


@dataclass(frozen=True)
class RollInspection:
    """The result of inspecting one roll.

    Attributes:
        roll: the frames.
        settings: as run (``window_height`` resolved).
        defects: by position along the roll.
        grade: the 4-point grade.
        windows: windows detected; seconds: wall time of detection and merging.
    """

    roll: RollFrames
    settings: RollSettings
    defects: tuple[InspectedDefect, ...]
    grade: RollGrade
    windows: int
    seconds: float

    @property
    def length_m(self) -> float:
        return self.roll.length * self.settings.mm_per_px_y / 1000.0

    @property
    def width_m(self) -> float:
        return self.roll.width * self.settings.mm_per_px_x / 1000.0


def roll_windows(roll: RollFrames, settings: RollSettings) -> list[Tile]:
    """The windows of the roll in roll pixels, band by band (row-major)."""
    height = settings.window_height or roll.heights[0]
    width = settings.tile_width or roll.width
    return tile_grid(roll.width, roll.length, width, height, overlap=settings.overlap)


def detect_roll(
    loaded: LoadedModel,
    roll: RollFrames,
    settings: RollSettings,
    windows: list[Tile],
    *,
    device: str = "auto",
    checkpoint: Path | None = None,
    progress: bool = True,
) -> TileOutputs:
    """Detections of every window, pooled in roll pixels (before merging).

    Raises:
        DataError: a frame that cannot be read, naming it.
    """
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    cfg = loaded.config
    if hasattr(model, "nms_method"):
        set_nms(model, settings.nms or cfg.eval_nms())
    threshold = (
        cfg.eval.defect_threshold if settings.score_threshold is None else settings.score_threshold
    )
    resize = (cfg.data.max_size, cfg.data.size_divisor)
    bands = sorted({t.y0 for t in windows})
    key = fingerprint(
        Path(loaded.path),
        roll.files,
        roll.frame_overlap,
        {k: v for k, v in asdict(settings).items() if k not in ("merge", "grading")},
    )
    done = read_checkpoint(checkpoint, key) if checkpoint else {}
    log = None
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        log = checkpoint.open("a" if done else "w", encoding="utf-8")
        if not done:
            log.write(json.dumps({"fingerprint": key}) + "\n")
    parts = [done[b] for b in sorted(done)]
    bar = Progress(len(bands), "inspect", initial=len(done), enabled=progress, every=10)
    try:
        for b, y0 in enumerate(bands):
            if b in done:
                continue
            index = [k for k, t in enumerate(windows) if t.y0 == y0]
            y1 = windows[index[0]].y1
            band = roll.rows(y0, y1)
            local = [Tile(t.x0, 0, t.x1, t.y1 - y0, t.inner) for t in (windows[k] for k in index)]
            out = detect_tiles(
                model,
                band,
                local,
                batch_size=settings.batch_size,
                resize=resize,
                score_threshold=threshold,
                device=dev,
                first_tile=index[0],
            )
            out = out.shifted(0, y0)
            parts.append(out)
            if log is not None:
                log.write(band_line(b, out) + "\n")
                log.flush()
            bar.update(defects=sum(len(p.scores) for p in parts))
    finally:
        bar.close()
        if log is not None:
            log.close()
    return TileOutputs.concat(parts)


def measure_defect(
    box: tuple[float, float, float, float],
    mask: CropMask | None,
    mm_per_px_x: float,
    mm_per_px_y: float,
) -> DefectMeasure:
    """Size of one defect on the roll: from its mask when it has one, else from its box.

    The mask is measured on its crop; its boxes (``bbox_px``, ``bbox_mm``) are moved back to
    roll pixels and millimetres from the roll's corner, as a box-measured defect's are.
    """
    if mask is None:
        return measure_box(box, mm_per_px_x, mm_per_px_y)
    m = measure_mask(mask.mask, mm_per_px_x, mm_per_px_y)
    x, y = mask.x0, mask.y0
    bx0, by0, bx1, by1 = m.bbox_px
    return replace(
        m,
        bbox_px=(bx0 + x, by0 + y, bx1 + x, by1 + y),
        bbox_mm=(
            (bx0 + x) * mm_per_px_x,
            (by0 + y) * mm_per_px_y,
            (bx1 + x) * mm_per_px_x,
            (by1 + y) * mm_per_px_y,
        ),
    )


def inspect_roll(
    loaded: LoadedModel,
    roll: RollFrames,
    settings: RollSettings | None = None,
    *,
    device: str = "auto",
    checkpoint: Path | None = None,
    progress: bool = True,
) -> RollInspection:
    """Detect, join, place, measure and grade the defects of a roll (module docstring)."""
    settings = settings or RollSettings()
    start = time.perf_counter()
    windows = roll_windows(roll, settings)
    pooled = detect_roll(
        loaded, roll, settings, windows, device=device, checkpoint=checkpoint, progress=progress
    )
    merged = merge_detections(
        pooled.boxes,
        pooled.scores,
        pooled.labels,
        pooled.tile_index,
        windows,
        settings.merge,
        masks=pooled.masks,
    )
    boxes = merged.boxes.numpy().astype(np.float64)
    masks = merged.masks or (None,) * len(boxes)
    order = np.lexsort((boxes[:, 0], boxes[:, 1])) if len(boxes) else np.zeros(0, np.int64)
    mm_x, mm_y = settings.mm_per_px_x, settings.mm_per_px_y
    rows = []
    for k in order:
        label = int(merged.labels[k])
        cat = loaded.categories[label]
        box = tuple(float(v) for v in boxes[k])
        m = measure_defect(box, masks[k], mm_x, mm_y)  # type: ignore[arg-type]
        rows.append((label, cat, float(merged.scores[k]), box, m, masks[k]))
    seconds = time.perf_counter() - start  # measuring is part of the inspection's time
    length_m = roll.length * mm_y / 1000.0
    grade = grade_roll(
        [
            RollDefect(min(b[1] * mm_y / 1000.0, length_m), m.length_mm, c.name)
            for _, c, _, b, m, _ in rows
        ],
        length_m,
        roll.width * mm_x / 1000.0,
        settings.grading,
    )
    defects = tuple(
        InspectedDefect(
            label=label,
            category_id=cat.id,
            category=cat.name,
            score=score,
            box_px=box,  # type: ignore[arg-type]
            start_m=box[1] * mm_y / 1000.0,
            end_m=box[3] * mm_y / 1000.0,
            measure=m,
            points=points,
            frames=(roll.frame_of_row(box[1]), roll.frame_of_row(max(box[1], box[3] - 1))),
            mask=mask,
        )
        for (label, cat, score, box, m, mask), points in zip(rows, grade.defect_points, strict=True)
    )
    height = settings.window_height or roll.heights[0]
    resolved = replace(settings, window_height=height)
    return RollInspection(roll, resolved, defects, grade, len(windows), seconds)


def inspection_json(insp: RollInspection) -> dict[str, Any]:
    """``defects.json``: the roll, the settings, the grade and every defect.

    Each defect's sizes come from its mask (``"measured_from": "mask"``; ``"shape"``: thin or
    blob, the rule that measured it) or its box (``"box"``). ``"mask"`` is the mask in roll
    pixels, cropped: ``{"x0", "y0", "size": [h, w], "counts"}``, the COCO RLE of an ``h x w``
    array whose top-left pixel is roll column ``x0``, row ``y0``
    (:meth:`fabricdet.engine.crop_mask.CropMask.to_json`); null without one.
    """
    s, g = insp.settings, insp.grade
    names = [f.name for f in insp.roll.files]
    return {
        "roll": {
            "source": str(insp.roll.files[0].parent if len(names) > 1 else insp.roll.files[0]),
            "frames": len(names),
            "width_px": insp.roll.width,
            "length_px": insp.roll.length,
            "width_m": insp.width_m,
            "length_m": insp.length_m,
            "mm_per_px_x": s.mm_per_px_x,
            "mm_per_px_y": s.mm_per_px_y,
        },
        "settings": {
            "window_height": s.window_height,
            "tile_width": s.tile_width,
            "overlap": s.overlap,
            "frame_overlap": insp.roll.frame_overlap,
            "merge": s.merge.method,
            "stitch": s.merge.stitch,
        },
        "grade": {
            "total_points": g.total_points,
            "points_per_100_sq_yd": round(g.points_per_100_sq_yd, 3),
            "passed": g.passed,
            "pass_threshold": s.grading.pass_threshold,
            "yard_points": list(g.yard_points),
            "inspected_yards": round(g.inspected_yards, 4),
            "width_in": round(g.width_in, 3),
        },
        "defects": [
            {
                "id": i + 1,
                "category_id": d.category_id,
                "category": d.category,
                "score": round(d.score, 5),
                "box_px": [round(v, 2) for v in d.box_px],
                "start_m": round(d.start_m, 5),
                "end_m": round(d.end_m, 5),
                "across_mm": [round(d.measure.bbox_mm[0], 2), round(d.measure.bbox_mm[2], 2)],
                "measured_from": "box" if d.measure.kind == "box" else "mask",
                "shape": d.measure.kind,
                "length_mm": round(d.measure.length_mm, 2),
                "width_mm": round(d.measure.width_mm, 2),
                "area_mm2": round(d.measure.area_mm2, 2),
                "length_px": round(d.measure.length_px, 2),
                "width_px": round(d.measure.width_px, 2),
                "area_px": round(d.measure.area_px, 2),
                "orientation_deg": d.measure.orientation_mm_deg,
                "points": d.points,
                "frames": [names[d.frames[0]], names[d.frames[1]]],
                "mask": None if d.mask is None else d.mask.to_json(),
            }
            for i, d in enumerate(insp.defects)
        ],
        "windows": insp.windows,
        "seconds": round(insp.seconds, 3),
    }
