"""Synthetic rolls: consecutive frames of one strip, ground truth in roll coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricdet.cli import main
from fabricdet.data.synth import SynthError
from fabricdet.data.synth.roll import generate_roll, render_roll


def test_roll_frames_tile_the_strip_and_defects_cross_boundaries(tmp_path: Path) -> None:
    truth = generate_roll(
        tmp_path / "roll", 0.3, seed=4, frame_size=(320, 128), mm_per_px=(0.5, 0.25),
        progress=False,
    )  # fmt: skip
    # 0.3 m at 0.25 mm/px = 1200 rows = 9.4 frames of 128 -> 10 frames, 0.32 m
    assert truth.num_frames == 10 and truth.length_m == pytest.approx(0.32)
    frames = sorted((tmp_path / "roll" / "frames").glob("*.jpg"))
    assert len(frames) == 10
    assert all(cv2.imread(str(f)).shape == (128, 320, 3) for f in frames)
    strip, instances = render_roll(4, (320, 128), 10)
    joined = np.concatenate([cv2.imread(str(f))[:, :, ::-1] for f in frames]).astype(int)
    assert np.abs(joined - strip).mean() < 4  # frames are the strip, cut (JPEG aside)

    meta = json.loads((tmp_path / "roll" / "roll.json").read_text())
    assert meta["length_px"] == 1280 and meta["width_m"] == pytest.approx(0.16)
    defects = meta["defects"]
    assert len(defects) == len(instances) > 0
    crossing = [d for d in defects if d["frames"][1] > d["frames"][0]]
    assert len(crossing) >= 2
    for d in defects:
        x1, y1, x2, y2 = d["box_px"]
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 1280
        assert d["start_m"] == pytest.approx(y1 * 0.25 / 1000)
        assert d["frames"] == [int(y1 // 128), int((y2 - 1) // 128)]


def test_roll_cli_and_dataset_cli_unchanged(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    argv = ["synth", str(out), "--roll", "0.1", "--size", "256x128", "--mm-per-px", "0.4"]
    assert main([*argv, "--quiet"]) == 0
    assert len(list((out / "frames").glob("*.jpg"))) == 2  # 0.1 m / 0.4 mm = 250 rows
    assert main([*argv, "--quiet"]) == 2  # occupied folder
    assert "--overwrite" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "d")]) == 2
    assert "--num-images" in capsys.readouterr().err
    assert main([*argv[:-1], "0,1"]) == 2
    assert "--mm-per-px" in capsys.readouterr().err


def test_too_large_a_roll_is_refused_before_rendering() -> None:
    with pytest.raises(SynthError, match="shorter roll"):
        render_roll(0, (4096, 4096), 10)
