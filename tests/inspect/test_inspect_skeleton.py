"""Skeleton paths, chord lengths and pixel-cell extents behind the defect measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.morphology import skeletonize

from fabricdet.inspect.extent import min_area_rect_sides, principal_axis_deg
from fabricdet.inspect.skeleton import chord_length, skeleton_of, trace_skeleton


def diagonal_band(length: int, thickness: int) -> np.ndarray:
    """A 45° line ``thickness`` pixel diagonals thick: ndarray[length + 10, length + 10]."""
    mask = np.zeros((length + 10, length + 10), dtype=bool)
    steps = np.arange(5, 5 + length)
    for k in range(thickness):
        mask[steps + k, steps] = True
    return mask


def test_lee_keeps_the_whole_skeleton_of_thick_diagonals() -> None:
    mask = diagonal_band(60, 2)
    # Zhang's thinning (skimage's default) erodes such a band from its ends.
    assert skeletonize(mask).sum() < 45
    trace = trace_skeleton(skeleton_of(mask))
    assert trace.step_lengths.size == 1
    assert len(trace.longest) >= 58


def test_longest_path_of_a_t_runs_along_its_long_arms() -> None:
    skeleton = np.zeros((40, 60), dtype=bool)
    skeleton[10, 5:55] = True  # 50 px bar
    skeleton[11:35, 30] = True  # 24 px stem from its middle
    path = trace_skeleton(skeleton).longest
    ends = {tuple(path[0]), tuple(path[-1])}
    # Bar end to bar end is 49 steps; bar end to stem end at most 24 + sqrt(2) + 23.
    assert ends == {(10, 5), (10, 54)}
    assert chord_length(path) == pytest.approx(49, abs=0.5)
    # Consecutive path pixels are 8-neighbours.
    assert np.abs(np.diff(path, axis=0)).max() == 1


def test_pieces_come_longest_first() -> None:
    skeleton = np.zeros((20, 60), dtype=bool)
    skeleton[5, 2:12] = True
    skeleton[15, 10:50] = True
    skeleton[2, 55] = True
    trace = trace_skeleton(skeleton)
    assert trace.step_lengths.tolist() == [39, 9, 0]
    assert len(trace.longest) == 40
    assert set(trace.longest[:, 0].tolist()) == {15}


def test_empty_skeleton_has_no_paths() -> None:
    trace = trace_skeleton(np.zeros((5, 5), dtype=bool))
    assert trace.step_lengths.shape == (0,)
    assert trace.longest.shape == (0, 2)


def test_chord_length_undoes_the_staircase() -> None:
    # A digital line at 22.5°: counting its steps as 1 and sqrt(2) overstates it by ~8 %.
    cols = np.arange(0, 241)
    rows = np.round(cols * math.tan(math.radians(22.5))).astype(int)
    path = np.stack([rows, cols], axis=1)
    true_length = math.hypot(rows[-1] - rows[0], cols[-1] - cols[0])
    steps = np.abs(np.diff(path, axis=0))
    step_count = float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    assert step_count / true_length > 1.07
    assert chord_length(path) == pytest.approx(true_length, rel=0.005)


def test_chord_length_scales_each_axis() -> None:
    path = np.stack([np.arange(11), np.arange(11)], axis=1)
    assert chord_length(path, pitch_x=0.1, pitch_y=0.3) == pytest.approx(10 * math.hypot(0.1, 0.3))
    assert chord_length(path[:1]) == 0.0


def test_min_area_rect_wraps_pixel_cells() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[3, 4] = True
    assert min_area_rect_sides(mask) == pytest.approx((1.0, 1.0))
    assert min_area_rect_sides(mask, 0.1, 0.3) == pytest.approx((0.3, 0.1))
    mask = diagonal_band(50, 1)
    long_side, short_side = min_area_rect_sides(mask)
    assert long_side == pytest.approx(50 * math.sqrt(2))
    # Opposite corners of the staircase's cells stick out 1/sqrt(2) on each side.
    assert short_side == pytest.approx(math.sqrt(2))


def test_principal_axis() -> None:
    rows, cols = np.nonzero(diagonal_band(30, 1))
    assert principal_axis_deg(rows, cols) == pytest.approx(45.0)
    assert principal_axis_deg(rows, -cols) == pytest.approx(135.0)
    tall = principal_axis_deg(rows, cols, 1.0, 2.0)
    assert tall == pytest.approx(math.degrees(math.atan(2)), abs=0.05)
    assert principal_axis_deg(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == 0.0
