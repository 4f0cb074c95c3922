"""The report in a real headless Chromium: it loads with no console error and every image
decodes (``naturalWidth > 0``). The checker is shown to catch a broken image and a script
error first, so that a clean result means something.

The browser comes from a registry package (see ``report_browser``); the test is skipped, with
the command that installs it, only when none can be found.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from report_browser import check_page, headless_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as b:
        yield b


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
    assert check.broken_images == []
