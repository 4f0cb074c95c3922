"""Roll grading by the 4-point system (ASTM D5430 style).

Each defect scores points by its length: up to 3 in: 1, over 3 to 6 in: 2, over 6 to 9 in: 3,
over 9 in: 4; holes and openings by their size: up to 1 in: 2, over 1 in: 4. No defect
scores more than 4 points, and (optionally) no linear yard of the roll more than 4. The roll
scores ``points * 3600 / (inspected yards * fabric width in inches)``, i.e. points per
100 square yards, and passes at or below a threshold (usually 40).

Lengths come in millimetres and the roll in metres: 1 in = 25.4 mm and 1 yd = 0.9144 m,
both exact by definition. Band edges are inclusive ("up to 3 in" includes 3 in); since
``76.2 / 25.4`` is not exactly 3 in floating point, lengths within a relative 1e-9 of an
edge count as on it, and so do scores within 1e-9 of the pass threshold.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID

MM_PER_INCH = 25.4
M_PER_YARD = 0.9144
INCHES_PER_YARD = 36

# Points per 100 sq yd = points * (100 * 36 * 36 sq in) / (yards * 36 in * width in).
_SQ_IN_PER_100_SQ_YD_PER_IN = 100 * INCHES_PER_YARD

# Relative slack at band edges and at the pass threshold, for mm -> in rounding noise.
_EDGE_RTOL = 1e-9


def _tianchi_hole_labels() -> frozenset[int | str]:
    """Id, English name and raw names of the Tianchi hole category (破洞)."""
    hole = next(c for c in TIANCHI_CATEGORIES if c.id == TIANCHI_RAW_TO_ID["破洞"])
    return frozenset({hole.id, hole.name, *hole.raw_names})


#: Labels that mark a defect as a hole by default: ``{1, "hole", "破洞"}``.
TIANCHI_HOLE_LABELS: frozenset[int | str] = _tianchi_hole_labels()


@dataclass(frozen=True)
class GradingConfig:
    """Rules of the 4-point system.

    Attributes:
        length_limits_in: inclusive upper limits (inches) of the length bands, increasing.
        length_points: points of each band, one more than the limits (the last band is
            open-ended).
        hole_limits_in, hole_points: the same for holes.
        hole_categories: category ids and/or names graded as holes.
        max_points_per_defect: cap on one defect's points.
        max_points_per_yard: cap on the points of one linear yard, or None for no cap.
        pass_threshold: highest points per 100 sq yd of a passing roll.
    """

    length_limits_in: tuple[float, ...] = (3.0, 6.0, 9.0)
    length_points: tuple[int, ...] = (1, 2, 3, 4)
    hole_limits_in: tuple[float, ...] = (1.0,)
    hole_points: tuple[int, ...] = (2, 4)
    hole_categories: frozenset[int | str] = TIANCHI_HOLE_LABELS
    max_points_per_defect: int = 4
    max_points_per_yard: int | None = 4
    pass_threshold: float = 40.0

    def __post_init__(self) -> None:
        for limits_name, points_name in (
            ("length_limits_in", "length_points"),
            ("hole_limits_in", "hole_points"),
        ):
            limits = getattr(self, limits_name)
            points = getattr(self, points_name)
            if not all(_is_number(v) and math.isfinite(v) and v > 0 for v in limits) or any(
                b <= a for a, b in itertools.pairwise(limits)
            ):
                raise ValueError(
                    f"{limits_name} must be positive finite inches, strictly increasing, "
                    f"got {limits!r}"
                )
            if len(points) != len(limits) + 1 or not all(_is_count(p) for p in points):
                raise ValueError(
                    f"{points_name} must be {len(limits) + 1} non-negative integers (one per "
                    f"band of {limits_name} plus the open-ended last band), got {points!r}"
                )
        if not (_is_count(self.max_points_per_defect) and self.max_points_per_defect >= 1):
            raise ValueError(
                f"max_points_per_defect must be an integer >= 1, got {self.max_points_per_defect!r}"
            )
        cap = self.max_points_per_yard
        if cap is not None and not (_is_count(cap) and cap >= 1):
            raise ValueError(f"max_points_per_yard must be None or an integer >= 1, got {cap!r}")
        threshold = self.pass_threshold
        if not (_is_number(threshold) and math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"pass_threshold must be a finite number >= 0, got {threshold!r}")


@dataclass(frozen=True)
class RollDefect:
    """One defect as the grading sees it.

    Attributes:
        position_m: distance along the roll from its start, in metres (picks its yard).
        length_mm: its length in millimetres; for a hole its largest dimension.
        category: category id or name, matched against ``GradingConfig.hole_categories``.
    """

    position_m: float
    length_mm: float
    category: int | str


@dataclass(frozen=True)
class RollGrade:
    """Grade of one roll.

    Attributes:
        total_points: points of the roll, after both caps.
        points_per_100_sq_yd: ``total_points * 3600 / (inspected_yards * width_in)``.
        passed: ``points_per_100_sq_yd <= pass_threshold``.
        defect_points: points of each defect in input order, after the per-defect cap.
        yard_points: points of each linear yard from the roll start (the last may be
            partial), after the per-yard cap; they sum to ``total_points``.
        yard_points_uncapped: the same before the per-yard cap.
        inspected_yards: roll length in yards; width_in: fabric width in inches.
    """

    total_points: int
    points_per_100_sq_yd: float
    passed: bool
    defect_points: tuple[int, ...]
    yard_points: tuple[int, ...]
    yard_points_uncapped: tuple[int, ...]
    inspected_yards: float
    width_in: float


def defect_points(defect: RollDefect, config: GradingConfig | None = None) -> int:
    """Points of one defect, after the per-defect cap.

    Raises:
        ValueError: a negative or non-finite length.
    """
    config = GradingConfig() if config is None else config
    _check_length(defect, 0)
    return int(
        _points(np.array([defect.length_mm]), np.array([_is_hole(defect, config)]), config)[0]
    )


def grade_roll(
    defects: Sequence[RollDefect],
    roll_length_m: float,
    roll_width_m: float,
    config: GradingConfig | None = None,
) -> RollGrade:
    """Grade a roll from its defects.

    Args:
        defects: the roll's defects; each counts in the yard holding its position (on a
            boundary: the later yard).
        roll_length_m: inspected length of the roll, metres.
        roll_width_m: fabric width, metres.
        config: the rules; the standard 4-point system when None.

    Raises:
        ValueError: a non-positive or non-finite roll length or width, a defect with a
            negative or non-finite length, or a position outside ``[0, roll_length_m]``.
    """
    config = GradingConfig() if config is None else config
    for name, value in (("roll_length_m", roll_length_m), ("roll_width_m", roll_width_m)):
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    for i, defect in enumerate(defects):
        _check_length(defect, i)
        position = defect.position_m
        if not (_is_number(position) and 0 <= position <= roll_length_m):
            raise ValueError(
                f"defect {i}: position_m must lie on the roll, in [0, {roll_length_m}] m, "
                f"got {position!r}"
            )

    inspected_yards = roll_length_m / M_PER_YARD
    width_in = roll_width_m * 1000.0 / MM_PER_INCH
    # The last yard may be partial; a length a rounding hair over whole yards adds none.
    n_yards = max(1, math.ceil(inspected_yards * (1 - _EDGE_RTOL)))
    lengths = np.array([d.length_mm for d in defects], dtype=np.float64)
    holes = np.array([_is_hole(d, config) for d in defects], dtype=bool)
    points = _points(lengths, holes, config)
    positions = np.array([d.position_m for d in defects], dtype=np.float64)
    # A defect on a yard boundary counts in the later yard, the slack absorbing rounding of
    # positions computed as whole yards; one at the roll's very end counts in the last yard.
    yards = np.floor(positions / M_PER_YARD * (1 + _EDGE_RTOL)).astype(np.int64)
    yards = np.minimum(yards, n_yards - 1)
    uncapped = np.bincount(yards, weights=points, minlength=n_yards).astype(np.int64)
    capped = (
        uncapped
        if config.max_points_per_yard is None
        else np.minimum(uncapped, config.max_points_per_yard)
    )
    total = int(capped.sum())
    score = total * _SQ_IN_PER_100_SQ_YD_PER_IN / (inspected_yards * width_in)
    return RollGrade(
        total_points=total,
        points_per_100_sq_yd=score,
        passed=score <= config.pass_threshold * (1 + _EDGE_RTOL),
        defect_points=tuple(int(p) for p in points),
        yard_points=tuple(int(p) for p in capped),
        yard_points_uncapped=tuple(int(p) for p in uncapped),
        inspected_yards=inspected_yards,
        width_in=width_in,
    )


def _points(lengths_mm: np.ndarray, holes: np.ndarray, config: GradingConfig) -> np.ndarray:
    """Capped points of defects of the given lengths: ndarray[N] of int."""
    inches = lengths_mm / MM_PER_INCH
    result = np.empty(inches.shape, dtype=np.int64)
    for is_hole, limits, band_points in (
        (False, config.length_limits_in, config.length_points),
        (True, config.hole_limits_in, config.hole_points),
    ):
        chosen = holes == is_hole
        # side="left": the first band whose (inclusive) upper limit reaches the length.
        band = np.searchsorted(np.asarray(limits) * (1 + _EDGE_RTOL), inches[chosen], "left")
        result[chosen] = np.asarray(band_points, dtype=np.int64)[band]
    return np.minimum(result, config.max_points_per_defect)


def _is_hole(defect: RollDefect, config: GradingConfig) -> bool:
    return defect.category in config.hole_categories


def _check_length(defect: RollDefect, index: int) -> None:
    length = defect.length_mm
    if not (_is_number(length) and math.isfinite(length) and length >= 0):
        raise ValueError(f"defect {index}: length_mm must be a finite number >= 0, got {length!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
