"""4-point roll grading: bands, holes, caps, the per-100-sq-yd score, pass/fail, errors."""

from __future__ import annotations

import pytest

from fabricdet.inspect import (
    M_PER_YARD,
    MM_PER_INCH,
    GradingConfig,
    RollDefect,
    defect_points,
    grade_roll,
)

THREAD = 3  # Tianchi "three-filament": not a hole
HOLE = 1  # Tianchi "hole" (破洞)
SQ_M_PER_SQ_YD = M_PER_YARD**2


@pytest.mark.parametrize(
    ("length_in", "points"),
    [
        (0.0, 1),
        (1.0, 1),
        (3.0, 1),  # band edges are inclusive
        (3.01, 2),
        (6.0, 2),
        (6.01, 3),
        (9.0, 3),
        (9.01, 4),
        (40.0, 4),
    ],
)
def test_length_bands(length_in: float, points: int) -> None:
    # 76.2 mm / 25.4 is 3.0000000000000004 in floating point: still "up to 3 in".
    defect = RollDefect(position_m=0.0, length_mm=length_in * MM_PER_INCH, category=THREAD)
    assert defect_points(defect) == points


def test_length_band_edges_given_in_mm() -> None:
    for length_mm, points in ((76.2, 1), (76.3, 2), (152.4, 2), (152.5, 3), (228.6, 3)):
        assert defect_points(RollDefect(0.0, length_mm, THREAD)) == points


@pytest.mark.parametrize(("length_mm", "points"), [(0.0, 2), (10.0, 2), (25.4, 2), (25.5, 4)])
@pytest.mark.parametrize("label", [1, "hole", "破洞"])
def test_hole_bands(length_mm: float, points: int, label: int | str) -> None:
    assert defect_points(RollDefect(0.0, length_mm, label)) == points


def test_hole_categories_are_configurable() -> None:
    config = GradingConfig(hole_categories=frozenset({7, "nep"}))
    assert defect_points(RollDefect(0.0, 10.0, 7), config) == 2
    assert defect_points(RollDefect(0.0, 10.0, "nep"), config) == 2
    assert defect_points(RollDefect(0.0, 10.0, HOLE), config) == 1


def test_no_defect_scores_more_than_the_cap() -> None:
    config = GradingConfig(length_points=(1, 2, 3, 6), hole_points=(2, 5))
    assert defect_points(RollDefect(0.0, 500.0, THREAD), config) == 4
    assert defect_points(RollDefect(0.0, 500.0, HOLE), config) == 4
    three = GradingConfig(max_points_per_defect=3, max_points_per_yard=None)
    assert defect_points(RollDefect(0.0, 500.0, THREAD), three) == 3


def test_per_yard_cap() -> None:
    # Three 2-point defects in the first yard, one 4-point defect in the second.
    defects = [
        RollDefect(0.1, 100.0, THREAD),
        RollDefect(0.5, 100.0, THREAD),
        RollDefect(0.9, 100.0, THREAD),
        RollDefect(1.0, 300.0, THREAD),
    ]
    grade = grade_roll(defects, roll_length_m=2 * M_PER_YARD, roll_width_m=1.0)
    assert grade.defect_points == (2, 2, 2, 4)
    assert grade.yard_points_uncapped == (6, 4)
    assert grade.yard_points == (4, 4)
    assert grade.total_points == 8
    uncapped = grade_roll(defects, 2 * M_PER_YARD, 1.0, GradingConfig(max_points_per_yard=None))
    assert uncapped.yard_points == (6, 4)
    assert uncapped.total_points == 10


def test_yards_of_a_partial_roll_and_their_boundaries() -> None:
    roll = 2.5 * M_PER_YARD
    defects = [
        RollDefect(M_PER_YARD, 10.0, THREAD),  # on the boundary: the later yard
        RollDefect(roll, 10.0, THREAD),  # at the very end: the last (partial) yard
    ]
    grade = grade_roll(defects, roll_length_m=roll, roll_width_m=1.5)
    assert grade.yard_points == (0, 1, 1)
    assert grade.inspected_yards == pytest.approx(2.5)


def test_points_per_100_square_yards_by_hand() -> None:
    # 100 yd of 60 in fabric, 30 points: 30 * 3600 / (100 * 60) = 18.
    defects = [RollDefect(i * 3 * M_PER_YARD, 100.0, THREAD) for i in range(15)]  # 2 each
    grade = grade_roll(defects, roll_length_m=100 * M_PER_YARD, roll_width_m=60 * 0.0254)
    assert grade.total_points == 30
    assert grade.width_in == pytest.approx(60)
    assert grade.points_per_100_sq_yd == pytest.approx(18.0)


def test_points_per_100_square_yards_on_a_metric_roll() -> None:
    # 50 m x 1.5 m = 75 m2 = 89.70 sq yd; 9 points -> 9 * 100 / 89.70 = 10.03 per 100 sq yd.
    defects = [RollDefect(5.0, 50.0, THREAD), RollDefect(20.0, 250.0, THREAD)]
    defects.append(RollDefect(30.0, 30.0, HOLE))
    grade = grade_roll(defects, roll_length_m=50.0, roll_width_m=1.5)
    assert grade.defect_points == (1, 4, 4)
    assert grade.total_points == 9
    area_sq_yd = 50.0 * 1.5 / SQ_M_PER_SQ_YD
    assert grade.points_per_100_sq_yd == pytest.approx(9 * 100 / area_sq_yd)
    assert grade.points_per_100_sq_yd == pytest.approx(10.0335, abs=1e-4)
    assert grade.passed


@pytest.mark.parametrize(("n_defects", "passed"), [(4, True), (5, False)])
def test_pass_fail_flips_at_the_threshold(n_defects: int, passed: bool) -> None:
    # 10 yd of 36 in fabric is 10 sq yd: each point is 10 points per 100 sq yd.
    defects = [RollDefect(i * M_PER_YARD, 10.0, THREAD) for i in range(n_defects)]
    grade = grade_roll(defects, roll_length_m=10 * M_PER_YARD, roll_width_m=M_PER_YARD)
    assert grade.points_per_100_sq_yd == pytest.approx(10.0 * n_defects)
    assert grade.passed is passed


def test_pass_threshold_is_configurable() -> None:
    defects = [RollDefect(i * M_PER_YARD, 10.0, THREAD) for i in range(4)]
    strict = GradingConfig(pass_threshold=39.9)
    assert not grade_roll(defects, 10 * M_PER_YARD, M_PER_YARD, strict).passed


def test_clean_roll() -> None:
    grade = grade_roll([], roll_length_m=10.0, roll_width_m=1.5)
    assert (grade.total_points, grade.points_per_100_sq_yd, grade.passed) == (0, 0.0, True)
    assert grade.yard_points == (0,) * 11
    assert grade.defect_points == ()


@pytest.mark.parametrize(
    ("defects", "length_m", "width_m", "match"),
    [
        ([RollDefect(1.0, -1.0, THREAD)], 10.0, 1.5, "length_mm"),
        ([RollDefect(1.0, float("nan"), THREAD)], 10.0, 1.5, "length_mm"),
        ([RollDefect(-0.1, 1.0, THREAD)], 10.0, 1.5, "position_m"),
        ([RollDefect(10.5, 1.0, THREAD)], 10.0, 1.5, "position_m"),
        ([], 0.0, 1.5, "roll_length_m"),
        ([], -3.0, 1.5, "roll_length_m"),
        ([], float("inf"), 1.5, "roll_length_m"),
        ([], 10.0, 0.0, "roll_width_m"),
    ],
)
def test_nonsense_is_a_value_error(
    defects: list[RollDefect], length_m: float, width_m: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        grade_roll(defects, length_m, width_m)


def test_defect_points_rejects_negative_length() -> None:
    with pytest.raises(ValueError, match="length_mm"):
        defect_points(RollDefect(0.0, -5.0, THREAD))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"length_limits_in": (3.0, 3.0, 9.0)}, "length_limits_in"),
        ({"length_limits_in": (-1.0, 6.0, 9.0)}, "length_limits_in"),
        ({"length_points": (1, 2, 3)}, "length_points"),
        ({"hole_points": (2, -4)}, "hole_points"),
        ({"max_points_per_defect": 0}, "max_points_per_defect"),
        ({"max_points_per_yard": 0}, "max_points_per_yard"),
        ({"pass_threshold": -1.0}, "pass_threshold"),
    ],
)
def test_bad_config_is_a_value_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GradingConfig(**kwargs)  # type: ignore[arg-type]
