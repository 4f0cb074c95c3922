"""The HTML report of one inspected roll: summary, grade, a defect map along the roll, the
points of each yard and the defect table (one self-contained file)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from fabricdet.engine.inspect_roll import RollInspection
from fabricdet.inspect import M_PER_YARD
from fabricdet.report.html import HtmlReport

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def defect_map(insp: RollInspection, width_px: int = 1400) -> np.ndarray:
    """The roll seen from above, its length left to right: each defect a rectangle coloured
    by category at its place (metres along, metres across), yard boundaries dashed, and below
    it the points of each yard against the per-yard cap.

    Returns:
        ndarray[H, W, 3] uint8 BGR.
    """
    length, width = insp.length_m, insp.width_m
    fig, (ax, bars) = plt.subplots(
        2,
        1,
        figsize=(width_px / 100, 4.2),
        dpi=100,
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    cats = sorted({d.category for d in insp.defects})
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(cats)}
    mm_x = insp.settings.mm_per_px_x / 1000.0
    for d in insp.defects:
        x1, _, x2, _ = d.box_px
        # at least a visible sliver: a 2 mm knot on a 50 m roll is far under one pixel
        along = max(d.end_m - d.start_m, length / 400)
        across = max((x2 - x1) * mm_x, width / 60)
        ax.add_patch(
            plt.Rectangle(
                (d.start_m, x1 * mm_x), along, across, color=colours[d.category], alpha=0.8
            )
        )
    for c in cats:
        ax.plot([], [], "s", color=colours[c], label=c)
    yards = np.arange(M_PER_YARD, length, M_PER_YARD)
    for y in yards:
        ax.axvline(y, color="#999", lw=0.6, ls="--")
    ax.set_xlim(0, length)
    ax.set_ylim(0, width)
    ax.set_ylabel("across (m)")
    ax.set_title(f"{len(insp.defects)} defects on {length:.2f} m x {width:.2f} m")
    if cats:
        ax.legend(loc="upper right", fontsize=7, ncol=min(len(cats), 5))
    points = np.asarray(insp.grade.yard_points, float)
    starts = np.arange(len(points)) * M_PER_YARD
    bars.bar(starts, points, width=M_PER_YARD * 0.9, align="edge", color="#c44")
    cap = insp.settings.grading.max_points_per_yard
    if cap is not None:
        bars.axhline(cap, color="#555", lw=0.8, ls=":")
    bars.set_ylabel("points/yd")
    bars.set_xlabel("along the roll (m)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)


def roll_report(insp: RollInspection, title: str) -> HtmlReport:
    """The report of an inspected roll as an :class:`HtmlReport` (call ``write``)."""
    g, s = insp.grade, insp.settings
    report = HtmlReport(title)
    verdict = "PASS" if g.passed else "FAIL"
    report.heading(
        f"Grade: {verdict} - {g.points_per_100_sq_yd:.1f} points per 100 sq yd "
        f"(pass at {s.grading.pass_threshold:g} or less)"
    )
    report.table(
        ["quantity", "value"],
        [
            ["roll length (m)", f"{insp.length_m:.3f}"],
            ["roll width (m)", f"{insp.width_m:.3f}"],
            ["frames", len(insp.roll.files)],
            ["pixel pitch across x along (mm)", f"{s.mm_per_px_x:g} x {s.mm_per_px_y:g}"],
            ["windows (rows x columns, overlap)", f"{insp.windows}, {s.overlap} px"],
            ["merge across window seams", f"{s.merge.method}, stitch={s.merge.stitch}"],
            ["defects", len(insp.defects)],
            ["total points (per-yard cap applied)", g.total_points],
            ["inspection time (s)", f"{insp.seconds:.1f}"],
            ["speed (m/min)", f"{60 * insp.length_m / max(insp.seconds, 1e-9):.1f}"],
        ],
    )
    report.heading("Defect map")
    report.image(defect_map(insp), "defects along the roll; below: 4-point points per yard")
    report.heading("Defects")
    names = [f.name for f in insp.roll.files]
    report.table(
        [
            "#",
            "category",
            "score",
            "start (m)",
            "end (m)",
            "across (mm)",
            "length (mm)",
            "width (mm)",
            "points",
            "frames",
        ],
        [
            [
                i + 1,
                d.category,
                f"{d.score:.2f}",
                f"{d.start_m:.3f}",
                f"{d.end_m:.3f}",
                f"{d.measure.bbox_mm[0]:.0f}-{d.measure.bbox_mm[2]:.0f}",
                f"{d.measure.length_mm:.1f}",
                f"{d.measure.width_mm:.1f}",
                d.points,
                names[d.frames[0]]
                if d.frames[0] == d.frames[1]
                else f"{names[d.frames[0]]} .. {names[d.frames[1]]}",
            ]
            for i, d in enumerate(insp.defects)
        ],
    )
    return report


def write_roll_report(insp: RollInspection, path: Path, title: str = "Roll inspection") -> Path:
    """Write the report to ``path`` atomically; returns ``path``."""
    roll_report(insp, title).write(Path(path))
    return Path(path)
