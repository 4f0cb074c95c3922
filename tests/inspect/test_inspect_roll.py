"""``inspect_roll`` and ``fabricdet inspect`` on a painted roll: defects continuing across
frames come out as one, placed in metres, measured, graded; resumable; clear input errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiling_testdata import paint, save_painted_model

from fabricdet.cli import main
from fabricdet.engine import load_model
from fabricdet.engine.inspect_roll import RollSettings, inspect_roll
from fabricdet.engine.roll_source import open_roll
from fabricdet.errors import DataError

WIDTH, FRAME, FRAMES = 300, 120, 5
PITCH = 0.5  # mm per pixel: the roll is 0.15 m wide and 0.3 m long
THREAD = (0, (100, 50, 104, 530))  # a hole-class line over 5 frames
KNOT = (1, (200, 230, 240, 250))  # across the boundary at row 240
NEP = (1, (20, 10, 40, 20))  # inside frame 0
EXPECTED = [  # (category, box) by start along the roll
    ("knot", (20, 10, 40, 20)),
    ("hole", (100, 50, 104, 530)),
    ("knot", (200, 230, 240, 250)),
]


def _strip() -> np.ndarray:
    return paint((WIDTH, FRAME * FRAMES), [THREAD, KNOT, NEP])


def _write_frames(folder: Path, overlap: int = 0) -> Path:
    folder.mkdir(parents=True)
    strip = _strip()
    step = FRAME - overlap
    for k, y in enumerate(range(0, len(strip) - overlap, step)):
        cv2.imwrite(str(folder / f"f{k:03d}.png"), strip[y : y + FRAME, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_painted_model(tmp_path_factory.mktemp("roll") / "painted.pt")


def _check(defects) -> None:
    got = [(d.category, d.box_px) for d in defects]
    assert [c for c, _ in got] == [c for c, _ in EXPECTED]
    for (_, box), (_, want) in zip(got, EXPECTED, strict=True):
        np.testing.assert_allclose(box, want, atol=2.0)


@pytest.mark.parametrize("layout", ["frames", "overlapping frames", "one image"])
def test_defects_across_frames_are_joined_placed_and_graded(
    tmp_path: Path, model_file: Path, layout: str
) -> None:
    if layout == "frames":
        roll = open_roll(_write_frames(tmp_path / "f"))
    elif layout == "overlapping frames":
        roll = open_roll(_write_frames(tmp_path / "f", overlap=30), frame_overlap=30)
    else:
        cv2.imwrite(str(tmp_path / "roll.png"), _strip()[:, :, ::-1])
        roll = open_roll(tmp_path / "roll.png")
    assert roll.length == FRAME * FRAMES
    settings = RollSettings(mm_per_px_x=PITCH, mm_per_px_y=PITCH, window_height=FRAME)
    insp = inspect_roll(load_model(model_file), roll, settings, progress=False)
    _check(insp.defects)
    thread = insp.defects[1]
    assert thread.start_m == pytest.approx(0.025, abs=1e-3)
    assert thread.end_m == pytest.approx(0.265, abs=1e-3)
    assert thread.measure.length_mm == pytest.approx(240, abs=1)
    assert thread.points == 4  # a hole over 1 inch
    assert [d.points for d in insp.defects] == [1, 4, 1]
    assert insp.grade.yard_points == (4,)  # one (partial) yard, capped at 4
    if layout == "frames":
        assert thread.frames == (0, 4) and insp.defects[2].frames == (1, 2)


def test_inspect_command_writes_json_and_report_and_resumes(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture
) -> None:
    frames = _write_frames(tmp_path / "frames")
    out = tmp_path / "out"
    argv = ["inspect", str(model_file), str(frames), "--out", str(out), "--mm-per-px", "0.5"]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "3 defects on 0.30 m" in printed.out
    assert "shrunk" not in printed.err  # 300 px windows, a 320 px model: its own scale
    doc = json.loads((out / "defects.json").read_text())
    assert doc["roll"]["length_m"] == pytest.approx(0.3)
    assert doc["roll"]["width_m"] == pytest.approx(0.15)
    assert [d["category"] for d in doc["defects"]] == ["knot", "hole", "knot"]
    assert doc["defects"][1]["frames"] == ["f000.png", "f004.png"]
    assert doc["grade"]["total_points"] == 4 and doc["grade"]["passed"] is False
    page = (out / "report.html").read_text()
    assert "Defect map" in page and "data:image/png;base64," in page and "FAIL" in page

    # Resume: a run killed after 3 bands (a torn 4th line) redoes only the rest.
    lines = (out / "windows.jsonl").read_text().splitlines()
    assert len(lines) == 1 + doc["windows"]
    (out / "windows.jsonl").write_text("\n".join(lines[:4]) + '\n{"band": 3, "bo')
    loaded = load_model(model_file)
    calls: list[int] = []
    forward = loaded.model.forward
    loaded.model.forward = lambda images, targets=None: calls.append(len(images)) or forward(images)
    settings = RollSettings(mm_per_px_x=PITCH, mm_per_px_y=PITCH)
    insp = inspect_roll(
        loaded, open_roll(frames), settings, checkpoint=out / "windows.jsonl", progress=False
    )
    assert sum(calls) == doc["windows"] - 3
    _check(insp.defects)


def test_bad_input_names_the_file_and_the_fix(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture
) -> None:
    frames = _write_frames(tmp_path / "frames")
    cv2.imwrite(str(frames / "f009.png"), np.zeros((FRAME, WIDTH + 10, 3), np.uint8))
    argv = ["inspect", str(model_file), str(frames), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "f009.png" in err and "310 px wide" in err and "remove" in err
    (frames / "f009.png").write_bytes(b"not an image")
    assert main(argv) == 2
    assert "f009.png" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image files"):
        open_roll(empty)
    assert main([*argv, "--merge", "union"]) == 2
    assert "--merge" in capsys.readouterr().err
    assert not (tmp_path / "o" / "defects.json").exists()


def test_windows_shrunk_below_the_models_scale_are_pointed_out(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture
) -> None:
    frames = tmp_path / "wide"
    frames.mkdir()
    for k in range(2):  # 1000 px wide frames; the model takes 320 px
        cv2.imwrite(str(frames / f"f{k}.png"), np.zeros((FRAME, 1000, 3), np.uint8))
    argv = ["inspect", str(model_file), str(frames), "--quiet", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "1000x120 px reach the model shrunk 3.1x" in err and "--tile-width 320" in err
    assert main([*argv, str(tmp_path / "b"), "--tile-width", "320"]) == 0
    assert "shrunk" not in capsys.readouterr().err
