"""The report in a real headless Chromium: it loads with no console error and every image
decodes (``naturalWidth > 0``). The checker is shown to catch a broken image and a script
error first, so that a clean result means something.

The browser comes from a registry package (see ``report_browser``); the test is skipped, with
the command that installs it, only when none can be found.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from report_browser import chromium_or_skip


@dataclass(frozen=True)
class PageCheck:
    errors: list[str]  # console errors, uncaught exceptions, failed requests
    images: list[tuple[str, bool, int]]  # (alt, complete, naturalWidth)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root).
        b = p.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        yield b
        b.close()


def check_page(browser: Any, path: Path) -> PageCheck:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"failed request: {r.url[:80]}"))
    try:
        page.goto(path.as_uri(), wait_until="load")
        images = page.evaluate(
            "Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth])"
        )
    finally:
        page.close()
    return PageCheck(errors, [tuple(i) for i in images])


def test_the_checker_catches_broken_pages(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><img alt='broken' src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom')</script></body></html>"
    )
    check = check_page(browser, bad)
    assert any("boom" in e for e in check.errors)
    assert check.images == [("broken", True, 0)]


@pytest.mark.parametrize("run_name", ["mask_run", "box_run"])
def test_report_loads_cleanly_in_chromium(browser, request, run_name):
    run = request.getfixturevalue(run_name)
    check = check_page(browser, run.report)
    assert check.errors == []
    assert len(check.images) >= 5
    broken = [alt for alt, complete, width in check.images if not (complete and width > 0)]
    assert broken == []
