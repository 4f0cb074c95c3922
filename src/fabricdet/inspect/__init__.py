"""Defect measurement (pixels and millimetres) and roll grading (4-point system)."""

from fabricdet.inspect.grading import (
    INCHES_PER_YARD,
    M_PER_YARD,
    MM_PER_INCH,
    TIANCHI_HOLE_LABELS,
    GradingConfig,
    RollDefect,
    RollGrade,
    defect_points,
    grade_roll,
)
from fabricdet.inspect.measure import (
    STRAIGHT_FILL,
    THIN_ELONGATION,
    DefectMeasure,
    ShapeKind,
    measure_box,
    measure_mask,
    measure_rle,
)

__all__ = [
    "INCHES_PER_YARD",
    "MM_PER_INCH",
    "M_PER_YARD",
    "STRAIGHT_FILL",
    "THIN_ELONGATION",
    "TIANCHI_HOLE_LABELS",
    "DefectMeasure",
    "GradingConfig",
    "RollDefect",
    "RollGrade",
    "ShapeKind",
    "defect_points",
    "grade_roll",
    "measure_box",
    "measure_mask",
    "measure_rle",
]
