"""Defect measures from masks, RLEs and boxes: lines, threads, blobs, pitch, edge cases."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from fabricdet.data.formats.rle import encode_mask, to_pycoco
from fabricdet.inspect import DefectMeasure, measure_box, measure_mask, measure_rle


def band(
    length: float, width: float, angle_deg: float, size: int = 160, centre: float = 80.013
) -> np.ndarray:
    """Rasterised straight band: pixels whose centre lies in the rotated rectangle.

    Returns:
        ndarray[size, size] of bool.
    """
    theta = math.radians(angle_deg)
    rows, cols = np.mgrid[0:size, 0:size]
    x = cols + 0.5 - centre
    y = rows + 0.5 - centre
    along = x * math.cos(theta) + y * math.sin(theta)
    across = -x * math.sin(theta) + y * math.cos(theta)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("angle", [0, 10, 22.5, 30, 45, 60, 90, 117, 135, 160])
def test_straight_line_length_and_width(width: int, angle: float) -> None:
    mask = band(100, width, angle)
    m = measure_mask(mask)
    assert m.kind == "thin"
    assert m.length_px == pytest.approx(100, rel=0.02)
    # The drawn line's own width is its area over its length; the nominal one may differ
    # slightly: at 45° a 3 px band holds 5 pixel diagonals 0.71 px apart, 3.54 px wide.
    assert abs(m.width_px - mask.sum() / 100) <= 0.5
    assert abs(m.width_px - width) <= 0.55
    # Orientation is an axis: 0 and 180 are the same direction.
    gap = abs(m.orientation_deg - angle) % 180
    assert min(gap, 180 - gap) < 2.0


@given(
    length=st.floats(80, 140),
    width=st.integers(1, 3),
    angle=st.floats(0, 180),
    shift=st.floats(-1, 1),
)
def test_any_straight_line_within_two_percent(
    length: float, width: int, angle: float, shift: float
) -> None:
    mask = band(length, width, angle, centre=80.013 + shift)
    m = measure_mask(mask)
    assert m.length_px == pytest.approx(length, rel=0.02)
    assert abs(m.width_px - mask.sum() / length) <= 0.5
    assert abs(m.width_px - width) <= 0.55


def test_axis_aligned_rectangle_blob_is_exact() -> None:
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:30, 15:55] = True  # 40 wide, 20 high
    m = measure_mask(mask)
    assert m.kind == "blob"
    assert (m.area_px, m.length_px, m.width_px) == (800, pytest.approx(40), pytest.approx(20))
    assert m.orientation_deg == pytest.approx(0.0, abs=1e-6)
    assert m.bbox_px == (15, 10, 55, 30)


def test_wide_straight_bar_is_thin_and_measured_by_its_rectangle() -> None:
    mask = np.zeros((40, 180), dtype=bool)
    mask[10:22, 15:165] = True  # 150 x 12: its skeleton stops ~6 px short of each end
    m = measure_mask(mask)
    assert m.kind == "thin"
    assert (m.length_px, m.width_px) == (pytest.approx(150), pytest.approx(12))


def test_thin_elongation_sets_the_rule() -> None:
    mask = np.zeros((40, 80), dtype=bool)
    mask[10:20, 10:60] = True  # 5:1
    assert measure_mask(mask).kind == "blob"
    assert measure_mask(mask, thin_elongation=2.0).kind == "thin"


def test_rotated_rectangle_blob() -> None:
    m = measure_mask(band(40, 20, 30))
    assert m.kind == "blob"
    # The rectangle wraps whole pixel cells, so it may exceed the drawn one by a cell.
    assert 40 <= m.length_px <= 41.5
    assert 20 <= m.width_px <= 21.5
    assert m.orientation_deg == pytest.approx(30, abs=1.0)


def test_disc_is_a_blob_of_its_diameter() -> None:
    rows, cols = np.mgrid[0:100, 0:100]
    disc = (rows - 50) ** 2 + (cols - 50) ** 2 <= 20**2
    m = measure_mask(disc)
    assert m.kind == "blob"
    assert m.length_px == pytest.approx(41, abs=1.0)
    assert m.width_px == pytest.approx(41, abs=1.0)
    assert m.area_px == pytest.approx(math.pi * 20**2, rel=0.02)
    assert m.orientation_deg == 0.0  # no main axis


@pytest.mark.parametrize("width", [1, 2, 3])
def test_l_shaped_thread_follows_the_skeleton(width: int) -> None:
    mask = np.zeros((100, 140), dtype=bool)
    mask[20 : 20 + width, 20:120] = True  # arm across
    mask[20:80, 120 - width : 120] = True  # arm down from its end
    centreline = (100 - width / 2) + (60 - width / 2)
    m = measure_mask(mask)
    assert m.kind == "thin"
    # The rectangle's long side (~117) would miss a quarter of it.
    assert m.length_px == pytest.approx(centreline, rel=0.05)
    assert abs(m.width_px - width) <= 0.5


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize(("radius", "span_deg"), [(40, 90), (50, 180), (30, 270)])
def test_curved_thread_follows_the_arc(width: int, radius: float, span_deg: float) -> None:
    rows, cols = np.mgrid[0:150, 0:150]
    x, y = cols + 0.5 - 75, rows + 0.5 - 75
    angle = np.degrees(np.arctan2(y, x)) % 360
    mask = (np.abs(np.hypot(x, y) - radius) <= width / 2) & (angle <= span_deg)
    m = measure_mask(mask)
    assert m.kind == "thin"
    assert m.length_px == pytest.approx(math.radians(span_deg) * radius, rel=0.05)


def test_dashed_line_spans_its_gaps() -> None:
    rows, cols = np.mgrid[0:160, 0:160]
    along = (cols + 0.5 - 80.013) * math.cos(math.radians(20)) + (rows + 0.5 - 80.013) * math.sin(
        math.radians(20)
    )
    mask = band(100, 2, 20) & (np.abs((along + 50) % 25 - 12.5) > 3)  # five dashes, 6 px gaps
    assert ndimage.label(mask, np.ones((3, 3)))[1] == 5
    m = measure_mask(mask)
    assert m.kind == "thin"
    assert m.length_px == pytest.approx(100, rel=0.02)


def test_anisotropic_pitch_horizontal_uses_x_pitch() -> None:
    mask = np.zeros((40, 150), dtype=bool)
    mask[20, 10:110] = True
    m = measure_mask(mask, mm_per_px_x=0.1, mm_per_px_y=0.3)
    assert m.length_px == pytest.approx(100)
    assert m.length_mm == pytest.approx(10.0)
    assert m.width_mm == pytest.approx(0.3)
    assert m.area_mm2 == pytest.approx(100 * 0.1 * 0.3)
    assert m.orientation_mm_deg == pytest.approx(0.0, abs=1e-6)
    assert m.bbox_mm == pytest.approx((1.0, 6.0, 11.0, 6.3))


def test_anisotropic_pitch_vertical_uses_y_pitch() -> None:
    mask = np.zeros((150, 40), dtype=bool)
    mask[10:110, 20] = True
    m = measure_mask(mask, mm_per_px_x=0.1, mm_per_px_y=0.3)
    assert m.length_mm == pytest.approx(30.0)
    assert m.width_mm == pytest.approx(0.1)
    assert m.orientation_mm_deg == pytest.approx(90.0)


@pytest.mark.parametrize("width", [1, 2])
def test_anisotropic_pitch_diagonal_uses_both(width: int) -> None:
    mask = np.zeros((130, 130), dtype=bool)
    steps = np.arange(10, 110)
    for k in range(width):
        mask[steps[: len(steps) - k] + k, steps[: len(steps) - k]] = True
    m = measure_mask(mask, mm_per_px_x=0.1, mm_per_px_y=0.3)
    # 100 diagonal cells, corner to corner: 100 * hypot(0.1, 0.3) mm.
    assert m.length_mm == pytest.approx(100 * math.hypot(0.1, 0.3), rel=0.01)
    assert m.length_px == pytest.approx(100 * math.sqrt(2), rel=0.01)
    assert m.orientation_deg == pytest.approx(45.0, abs=0.5)
    assert m.orientation_mm_deg == pytest.approx(math.degrees(math.atan2(0.3, 0.1)), abs=0.5)


def test_disc_through_an_anisotropic_camera_is_a_disc_in_mm() -> None:
    # A 8 mm disc seen at 0.1 mm/px across and 0.4 mm/px along: an 80 x 20 px ellipse.
    rows, cols = np.mgrid[0:120, 0:120]
    ellipse = ((cols + 0.5 - 60) / 40) ** 2 + ((rows + 0.5 - 60) / 10) ** 2 <= 1
    m = measure_mask(ellipse, mm_per_px_x=0.1, mm_per_px_y=0.4)
    assert m.kind == "blob"
    assert m.length_mm == pytest.approx(8.0, abs=0.4)
    assert m.width_mm == pytest.approx(8.0, abs=0.4)
    assert m.length_px == pytest.approx(80, abs=1.0)
    assert m.width_px == pytest.approx(20, abs=1.0)


@pytest.mark.parametrize("mask", [band(100, 2, 30), band(40, 20, 70)])
def test_isotropic_pitch_scales_pixels(mask: np.ndarray) -> None:
    m = measure_mask(mask, mm_per_px_x=0.25, mm_per_px_y=0.25)
    assert m.length_mm == pytest.approx(0.25 * m.length_px)
    assert m.width_mm == pytest.approx(0.25 * m.width_px)
    assert m.area_mm2 == pytest.approx(0.0625 * m.area_px)
    assert m.orientation_mm_deg == pytest.approx(m.orientation_deg)


def test_empty_mask_measures_zero() -> None:
    m = measure_mask(np.zeros((20, 30), dtype=bool), 0.1, 0.2)
    assert m.kind == "empty"
    assert (m.area_px, m.length_px, m.width_px, m.length_mm, m.area_mm2) == (0, 0, 0, 0, 0)
    assert m.bbox_px == (0, 0, 0, 0)


def test_one_pixel() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5, 7] = True
    m = measure_mask(mask, mm_per_px_x=0.1, mm_per_px_y=0.3)
    assert m.kind == "blob"
    assert (m.area_px, m.length_px, m.width_px) == (1, 1, 1)
    assert m.bbox_px == (7, 5, 8, 6)
    assert m.length_mm == pytest.approx(0.3)
    assert m.width_mm == pytest.approx(0.1)
    assert m.area_mm2 == pytest.approx(0.03)
    assert m.orientation_mm_deg == pytest.approx(90.0)  # the cell is taller than wide


def test_pixel_at_the_image_border() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 3] = True
    assert measure_mask(mask).length_px == pytest.approx(1.0)


def test_rle_equals_mask() -> None:
    mask = band(90, 3, 33) | band(30, 12, 100)
    rle = encode_mask(mask)
    expected = measure_mask(mask, 0.1, 0.2)
    assert measure_rle(rle, 0.1, 0.2) == expected
    assert measure_rle(to_pycoco(rle), 0.1, 0.2) == expected  # bytes counts


@given(
    cells=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), min_size=1, max_size=60),
    dx=st.integers(0, 30),
    dy=st.integers(0, 30),
)
def test_translation_moves_only_the_box(cells: list[tuple[int, int]], dx: int, dy: int) -> None:
    shape = np.zeros((12, 12), dtype=bool)
    shape[tuple(np.array(cells).T)] = True
    canvas = np.zeros((50, 50), dtype=bool)
    canvas[dy : dy + 12, dx : dx + 12] = shape
    here = measure_mask(shape, 0.1, 0.3)
    there = measure_mask(canvas, 0.1, 0.3)
    x0, y0, x1, y1 = here.bbox_px
    assert there.bbox_px == (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    moved = ("bbox_px", "bbox_mm")
    for field in dataclasses.fields(DefectMeasure):
        if field.name not in moved:
            assert getattr(there, field.name) == pytest.approx(getattr(here, field.name))


def test_box_fallback_long_and_short_side() -> None:
    m = measure_box((10, 20, 110, 30), mm_per_px_x=0.1, mm_per_px_y=0.3)
    assert m.kind == "box"
    assert (m.length_px, m.width_px, m.area_px, m.orientation_deg) == (100, 10, 1000, 0)
    assert m.length_mm == pytest.approx(10.0)
    assert m.width_mm == pytest.approx(3.0)
    assert m.bbox_mm == pytest.approx((1.0, 6.0, 11.0, 9.0))


def test_box_long_side_can_change_axis_in_mm() -> None:
    m = measure_box((0, 0, 10, 8), mm_per_px_x=0.1, mm_per_px_y=0.2)
    assert (m.length_px, m.orientation_deg) == (10, 0)
    assert (m.length_mm, m.orientation_mm_deg) == (pytest.approx(1.6), 90)


@pytest.mark.parametrize(
    "call",
    [
        lambda: measure_mask(np.zeros((2, 2, 2), dtype=bool)),
        lambda: measure_mask(np.ones((2, 2), dtype=bool), mm_per_px_x=0),
        lambda: measure_mask(np.ones((2, 2), dtype=bool), mm_per_px_y=-0.1),
        lambda: measure_mask(np.ones((2, 2), dtype=bool), mm_per_px_x=float("nan")),
        lambda: measure_box((10, 0, 5, 5)),
        lambda: measure_box((0, 0, float("inf"), 5)),
        lambda: measure_box((0, 0, 5)),  # type: ignore[arg-type]
    ],
)
def test_bad_inputs_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
