"""The HTML report of one inspected roll: summary, grade, a defect map along the roll, the
points of each yard, the defect table (sizes from masks where the model gives them) and a
gallery of defect crops with their masks drawn (one self-contained file).

Colours follow the model label everywhere (the eval report's palette,
:func:`fabricdet.report.gallery.colour`), so a defect has one colour on the map and in the
gallery."""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from fabricdet.engine.crop_mask import CropMask
from fabricdet.engine.inspect_roll import InspectedDefect, RollInspection
from fabricdet.inspect import M_PER_YARD
from fabricdet.report.gallery import colour, draw
from fabricdet.report.html import HtmlReport

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: Defects shown in the gallery (most points first): a roll may hold hundreds.
GALLERY_LIMIT = 24

#: Largest side of a gallery crop as shown, pixels; crops are read at most this large too.
CROP_SIDE = 280


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
    cats = sorted({(d.label, d.category) for d in insp.defects})
    colours = {c: _rgb(label) for label, c in cats}
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
    for _, c in cats:
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


def _rgb(label: int) -> tuple[float, float, float]:
    """Matplotlib colour of a label: the gallery's BGR colour as RGB in [0, 1]."""
    b, g, r = colour(label)
    return r / 255, g / 255, b / 255


def crop_region(
    d: InspectedDefect, width: int, length: int, margin: int = 16
) -> tuple[int, int, int, int]:
    """The roll region shown for a defect: its box and mask with some fabric around (the
    larger of ``margin`` pixels and a tenth of its long side), clipped to the roll."""
    x0, y0, x1, y1 = d.box_px
    if d.mask is not None:
        mx0, my0, mx1, my1 = d.mask.box
        x0, y0, x1, y1 = min(x0, mx0), min(y0, my0), max(x1, mx1), max(y1, my1)
    pad = max(margin, 0.1 * max(x1 - x0, y1 - y0))
    return (
        max(0, math.floor(x0 - pad)),
        max(0, math.floor(y0 - pad)),
        min(width, math.ceil(x1 + pad)),
        min(length, math.ceil(y1 + pad)),
    )


def defect_crop(insp: RollInspection, d: InspectedDefect, side: int = CROP_SIDE) -> np.ndarray:
    """One defect on its patch of the roll, its mask tinted and its box drawn, fitted into
    ``side`` x ``side`` pixels.

    Returns:
        ndarray[H, W, 3] uint8 BGR, ``max(H, W) == side`` (small defects are enlarged).
    """
    rx0, ry0, rx1, ry1 = crop_region(d, insp.roll.width, insp.roll.length)
    w, h = rx1 - rx0, ry1 - ry0
    scale = min(1.0, side / max(w, h))  # read no more pixels than are shown
    patch = insp.roll.thumbnail(rx0, ry0, rx1, ry1, scale)[:, :, ::-1]
    ph, pw = patch.shape[:2]
    masks = None
    if d.mask is not None:
        masks = [_scaled_mask(d.mask, (rx0, ry0), scale, (ph, pw))]
    x1, y1, x2, y2 = d.box_px
    box = np.array(
        [[(x1 - rx0) * scale, (y1 - ry0) * scale, (x2 - rx0) * scale, (y2 - ry0) * scale]]
    )
    names = [""] * (d.label + 1)
    names[d.label] = d.category
    shown = min(side / pw, side / ph)  # the display fits the square, enlarging small crops
    return draw(
        np.ascontiguousarray(patch),
        [],
        box,
        np.array([d.label]),
        np.array([d.score]),
        names,
        masks=masks,
        width=max(1, round(pw * shown)),
    )


def _scaled_mask(
    mask: CropMask, origin: tuple[int, int], scale: float, size: tuple[int, int]
) -> np.ndarray:
    """``mask`` on a patch of the roll whose corner is roll pixel ``origin``, scaled by
    ``scale`` like the patch (``size``: its ``(height, width)``). Shrinking keeps any pixel
    touched (INTER_AREA > 0), so a one-pixel thread stays visible.

    Returns:
        ndarray[height, width] bool.
    """
    out = np.zeros(size, dtype=bool)
    mx0, my0, mx1, my1 = mask.box
    ox = min(round((mx0 - origin[0]) * scale), size[1] - 1)
    oy = min(round((my0 - origin[1]) * scale), size[0] - 1)
    mw = max(1, min(round((mx1 - mx0) * scale), size[1] - ox))
    mh = max(1, min(round((my1 - my0) * scale), size[0] - oy))
    small = mask.mask.astype(np.uint8)
    if scale != 1.0:
        small = cv2.resize(small * 255, (mw, mh), interpolation=cv2.INTER_AREA)
    out[oy : oy + mh, ox : ox + mw] = small[:mh, :mw] > 0
    return out


def _gallery(report: HtmlReport, insp: RollInspection, limit: int) -> None:
    report.heading("Defect gallery", anchor="gallery")
    if not insp.defects:
        report.paragraph("No defects.")
        return
    ranked = sorted(
        range(len(insp.defects)), key=lambda i: (-insp.defects[i].points, -insp.defects[i].score, i)
    )
    shown = ranked[:limit]
    if len(ranked) > limit:
        report.paragraph(
            f"The {limit} defects with most points of {len(ranked)}; all are in the table."
        )
    for i in shown:
        d = insp.defects[i]
        m = d.measure
        source = "box" if m.kind == "box" else f"mask, {m.kind}"
        report.image(
            defect_crop(insp, d),
            f"#{i + 1} {d.category} at {d.start_m:.3f} m: {m.length_mm:.1f} x {m.width_mm:.1f} mm, "
            f"{m.area_mm2:.1f} mm2 ({source}), {d.points} point(s)",
        )


def roll_report(insp: RollInspection, title: str, gallery: int = GALLERY_LIMIT) -> HtmlReport:
    """The report of an inspected roll as an :class:`HtmlReport` (call ``write``).

    Args:
        gallery: defects shown as crops (most points first); 0: no gallery.
    """
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
    report.heading("Defect map", anchor="map")
    report.image(defect_map(insp), "defects along the roll; below: 4-point points per yard")
    report.heading("Defects", anchor="defects")
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
            "area (mm2)",
            "measured from",
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
                f"{d.measure.area_mm2:.1f}",
                "box" if d.measure.kind == "box" else f"mask ({d.measure.kind})",
                d.points,
                names[d.frames[0]]
                if d.frames[0] == d.frames[1]
                else f"{names[d.frames[0]]} .. {names[d.frames[1]]}",
            ]
            for i, d in enumerate(insp.defects)
        ],
    )
    if gallery > 0:
        _gallery(report, insp, gallery)
    return report


def write_roll_report(insp: RollInspection, path: Path, title: str = "Roll inspection") -> Path:
    """Write the report to ``path`` atomically; returns ``path``."""
    roll_report(insp, title).write(Path(path))
    return Path(path)
