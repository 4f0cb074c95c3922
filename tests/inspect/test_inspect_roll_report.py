"""The roll report (``report.html`` of ``fabricdet inspect``): grade, defect map, the defect
table with mask measures, a gallery of defect crops with their masks drawn; and in a real
headless Chromium it loads with no console error or failed request and every image decodes.

The browser check reuses ``tests/report/report_browser.py`` (the same Chromium lookup, skip
and ``FABRICDET_REQUIRE_BROWSER=1`` rule, and page checker as the eval report's test)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from tiling_testdata import (
    drop_masks,
    paint,
    save_painted_model,
    wave,
    with_curve,
    with_disc,
    write_frames,
)

from fabricdet.engine import load_model
from fabricdet.engine.inspect_roll import RollInspection, RollSettings, inspect_roll
from fabricdet.engine.roll_source import open_roll
from fabricdet.report.roll_report import write_roll_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from report_browser import check_page, headless_chromium
from report_html_parse import parse_report, png_bytes

WIDTH, FRAME, FRAMES = 300, 120, 4
PITCH = 0.3


def _strip() -> np.ndarray:
    strip = paint((WIDTH, FRAME * FRAMES), [(1, (20, 300, 60, 330))])  # a knot
    strip = with_curve(strip, 0, wave(200, 20, 400, amplitude=30, period=190), 2)  # a thread
    return with_disc(strip, 1, (90, 120), 18)  # a blob on the seam of frames 0 and 1


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, RollInspection]]:
    """The report of the roll with the mask-predicting painted detector and box-only."""
    root = tmp_path_factory.mktemp("rollreport")
    frames = write_frames(root / "frames", _strip(), FRAME)
    model = save_painted_model(root / "painted.pt")
    settings = RollSettings(mm_per_px_x=PITCH, mm_per_px_y=PITCH, window_height=FRAME)
    out = {}
    for name in ("masks", "boxes"):
        loaded = load_model(model)
        if name == "boxes":
            drop_masks(loaded.model)
        insp = inspect_roll(loaded, open_roll(frames), settings, progress=False)
        out[name] = (write_roll_report(insp, root / f"{name}.html", "Roll"), insp)
    return out


def _tinted(png: bytes) -> int:
    """Pixels of a gallery crop where the hole class's mask tint (tab10 blue) lies over the
    red thread: purple, which neither the bare thread nor the box outline is."""
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(int)
    b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
    return int(((b > 50) & (r > 100) & (g < 90)).sum())


def test_report_has_map_table_and_gallery_with_masks(reports) -> None:
    path, insp = reports["masks"]
    page = parse_report(path.read_text())
    assert "Defect map" in page.headings and "Defect gallery" in page.headings
    assert {"map", "defects", "gallery"} <= set(page.ids)
    table = page.tables[1]
    assert "area (mm2)" in table[0] and "measured from" in table[0]
    col = table[0].index("measured from")
    assert sorted(row[col] for row in table[1:]) == ["mask (blob)", "mask (blob)", "mask (thin)"]
    gallery = [(src, alt) for src, alt in page.images if alt.startswith("#")]
    assert len(gallery) == len(insp.defects) == 3
    assert gallery[0][1].startswith("#") and "(mask, thin)" in gallery[0][1]  # most points
    thread_png = png_bytes(gallery[0][0])
    assert _tinted(thread_png) > 100
    size = cv2.imdecode(np.frombuffer(thread_png, np.uint8), cv2.IMREAD_COLOR).shape
    assert max(size[:2]) == 280

    box_path, _ = reports["boxes"]
    box_page = parse_report(box_path.read_text())
    box_gallery = [(src, alt) for src, alt in box_page.images if alt.startswith("#")]
    assert len(box_gallery) == 3 and all("(box)" in alt for _, alt in box_gallery)
    thread = next(src for src, alt in box_gallery if "hole" in alt)
    assert _tinted(png_bytes(thread)) == 0  # nothing tinted without masks


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as b:
        yield b


@pytest.mark.parametrize("name", ["masks", "boxes"])
def test_roll_report_loads_cleanly_in_chromium(browser, reports, name: str) -> None:
    path, insp = reports[name]
    check = check_page(browser, path)
    assert check.errors == []
    assert len(check.images) == 1 + len(insp.defects)  # the map and one crop per defect
    assert check.broken_images == []
