"""The resume file of roll inspection: the detections of each finished band of windows.

One JSON line per band (``{"band", "boxes", "scores", "labels", "tile_index", "masks"}``) after
a header line ``{"fingerprint": ...}`` identifying the run (model file, frames, settings, and
the line format). ``masks`` holds one entry per detection, ``null`` or a cropped mask in roll
pixels (:meth:`fabricdet.engine.crop_mask.CropMask.to_json`); it is absent for a box-only
model. A line torn by a run killed mid-write ends the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from fabricdet.engine.crop_mask import CropMask
from fabricdet.engine.tiled import TileOutputs

#: Version of the line format, part of the fingerprint: a file of an older format (e.g.
#: without masks) is not resumed from, so a roll never mixes bands with and without masks.
FORMAT = 2


def fingerprint(model: Path, frames: tuple[Path, ...], frame_overlap: int, settings: Any) -> str:
    """A short hash of what decides the detections: the model file, the frames (paths, sizes,
    times), their overlap and ``settings`` (a dict; merge and grading excluded by the caller,
    they act after detection)."""
    stat = model.stat() if model.exists() else None
    key = {
        "format": FORMAT,
        "model": [str(model), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0],
        "frames": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in frames],
        "overlap": frame_overlap,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]


def read_checkpoint(path: Path, fingerprint: str) -> dict[int, TileOutputs]:
    """Finished bands of an earlier run with the same fingerprint (a torn last line, from a
    run killed mid-write, is ignored; another run's file is ignored)."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
            return {}
    except json.JSONDecodeError:
        return {}
    done: dict[int, TileOutputs] = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        masks = rec.get("masks")
        done[int(rec["band"])] = TileOutputs(
            torch.tensor(rec["boxes"], dtype=torch.float32).reshape(-1, 4),
            torch.tensor(rec["scores"], dtype=torch.float32),
            torch.tensor(rec["labels"], dtype=torch.long),
            torch.tensor(rec["tile_index"], dtype=torch.long),
            None
            if masks is None
            else tuple(None if m is None else CropMask.from_json(m) for m in masks),
        )
    return done


def band_line(band: int, out: TileOutputs) -> str:
    """The JSON line of one finished band (no newline)."""
    rec: dict[str, Any] = {
        "band": band,
        "boxes": [[round(float(v), 2) for v in b] for b in out.boxes.tolist()],
        "scores": [round(float(s), 5) for s in out.scores.tolist()],
        "labels": out.labels.tolist(),
        "tile_index": out.tile_index.tolist(),
    }
    if out.masks is not None:
        rec["masks"] = [None if m is None else m.to_json() for m in out.masks]
    return json.dumps(rec)
