"""Roll inspection measures defects from their masks: a wavy thread running over several frame
seams is measured along its whole skeleton (its box would say much less), a blob across a seam
by its pixel area; ``defects.json`` carries the masks; a box-only model falls back to boxes.

The painted detector works at the model's size (300x120 frames seen at 320x128), so masks
come back through the resampling of a real model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiling_testdata import (
    drop_masks,
    save_painted_model,
    wave,
    with_curve,
    with_disc,
    write_frames,
)

from fabricdet.cli import main
from fabricdet.engine import load_model
from fabricdet.engine.crop_mask import CropMask
from fabricdet.engine.inspect_roll import RollSettings, inspect_roll
from fabricdet.engine.roll_source import open_roll
from fabricdet.inspect import measure_mask

WIDTH, FRAME, FRAMES = 300, 120, 5
PITCH_X, PITCH_Y = 0.4, 0.25  # mm per pixel across and along: anisotropic on purpose
THREAD = wave(100, 40, 560, amplitude=40, period=260)  # hole class, over frames 0..4
BLOB = ((220, 240), 22)  # knot class, centred on the seam of frames 1 and 2


def _strip() -> np.ndarray:
    strip = with_curve(np.zeros((FRAME * FRAMES, WIDTH, 3), np.uint8), 0, THREAD, 3)
    return with_disc(strip, 1, *BLOB)


def _arc_mm(points: np.ndarray) -> float:
    step = np.diff(points, axis=0) * [PITCH_X, PITCH_Y]
    return float(np.hypot(step[:, 0], step[:, 1]).sum())


@pytest.fixture(scope="module")
def roll_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_frames(tmp_path_factory.mktemp("wavy") / "frames", _strip(), FRAME)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_painted_model(tmp_path_factory.mktemp("model") / "painted.pt")


def test_thread_over_seams_is_measured_along_its_skeleton_and_blob_by_area(
    roll_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    settings = RollSettings(mm_per_px_x=PITCH_X, mm_per_px_y=PITCH_Y, window_height=FRAME)
    insp = inspect_roll(
        load_model(model_file), open_roll(roll_dir), settings, progress=False,
        checkpoint=tmp_path / "windows.jsonl",
    )  # fmt: skip
    assert [d.category for d in insp.defects] == ["hole", "knot"]
    thread, blob = insp.defects
    assert thread.frames == (0, 4) and blob.frames == (1, 2)
    painted = _strip()

    # the joined thread's mask is the painted thread, pieces from 5+ windows united
    assert thread.mask is not None
    truth = painted[:, :, 0] > 0
    got = thread.mask.window(0, 0, WIDTH, FRAME * FRAMES)
    assert (got & truth).sum() / (got | truth).sum() > 0.9
    # the whole wave, within a few %: 3 px thick, so allow for its round ends
    arc = _arc_mm(THREAD)
    assert thread.measure.kind == "thin"
    assert thread.measure.length_mm == pytest.approx(arc, rel=0.03)
    box_length = (thread.box_px[3] - thread.box_px[1]) * PITCH_Y
    assert box_length < 0.8 * arc  # what the box alone would have said
    # and as wide as the painted pixels measure (a 3 px cv2 line is ~4 px wide on a slant)
    painted_thread = measure_mask(truth, PITCH_X, PITCH_Y)
    assert thread.measure.width_px == pytest.approx(painted_thread.width_px, rel=0.05)

    # the blob: its pixel area, not its box's
    area_px = int((painted[:, :, 1] > 0).sum())
    assert blob.measure.kind == "blob"
    assert blob.measure.area_px == pytest.approx(area_px, rel=0.03)
    assert blob.measure.area_mm2 == pytest.approx(area_px * PITCH_X * PITCH_Y, rel=0.03)
    (cx, cy), r = BLOB
    np.testing.assert_allclose(
        blob.measure.bbox_px, (cx - r, cy - r, cx + r + 1, cy + r + 1), atol=1.5
    )

    # resumed from the checkpoint, masks included: the same measures
    again = inspect_roll(
        load_model(model_file), open_roll(roll_dir), settings, progress=False,
        checkpoint=tmp_path / "windows.jsonl",
    )  # fmt: skip
    assert [d.measure for d in again.defects] == [d.measure for d in insp.defects]


def test_defects_json_has_mask_measures_and_rle_and_box_only_falls_back(
    roll_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["inspect", str(model_file), str(roll_dir), "--out", str(out), "--quiet"]
    assert main([*argv, "--mm-per-px", f"{PITCH_X},{PITCH_Y}", "--window-height", "120"]) == 0
    doc = json.loads((out / "defects.json").read_text())
    thread, blob = doc["defects"]
    assert thread["measured_from"] == "mask" and thread["shape"] == "thin"
    assert blob["shape"] == "blob" and blob["area_px"] > 0
    assert thread["length_mm"] == pytest.approx(_arc_mm(THREAD), rel=0.03)
    mask = CropMask.from_json(thread["mask"])
    assert mask.area == pytest.approx(thread["area_px"])
    x0, y0, _, y1 = mask.box
    assert (x0, y0) == (thread["mask"]["x0"], thread["mask"]["y0"])
    assert y0 <= 41 and y1 >= 560  # roll rows, not a window's

    settings = RollSettings(mm_per_px_x=PITCH_X, mm_per_px_y=PITCH_Y, window_height=FRAME)
    loaded = load_model(model_file)
    drop_masks(loaded.model)
    boxes = inspect_roll(loaded, open_roll(roll_dir), settings, progress=False)
    assert [d.measure.kind for d in boxes.defects] == ["box", "box"]
    assert all(d.mask is None for d in boxes.defects)
    assert boxes.defects[0].measure.length_mm == pytest.approx(
        (boxes.defects[0].box_px[3] - boxes.defects[0].box_px[1]) * PITCH_Y
    )
