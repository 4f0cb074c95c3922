"""Finding a headless Chromium for the report's browser test, without downloading a browser.

Looked for in order:
1. ``FABRICDET_CHROMIUM``: the path of a Chromium or Chrome executable;
2. the npm package ``@sparticuz/chromium`` installed by ``npm ci --prefix tests/report/browser``
   (it bundles a brotli-compressed Chromium for x86-64 Linux, which its ``executablePath()``
   unpacks once into a temporary folder; the binary needs only glibc);
3. a Chromium that ``playwright install chromium`` put in Playwright's cache;
4. ``chromium``, ``chromium-browser``, ``google-chrome`` on ``PATH`` (e.g. Debian's chromium).

:func:`chromium_or_skip` skips the calling test, saying how to install one, when none is found;
with ``FABRICDET_REQUIRE_BROWSER=1`` (CI, once it installs the browser) it fails instead.

:func:`headless_chromium` launches it and :func:`check_page` loads a page in it, collecting
console errors, uncaught exceptions, failed requests and the decoded size of every image:
shared by the eval report's test and the roll report's (``tests/inspect``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BROWSER_DIR = Path(__file__).parent / "browser"
NPM_PACKAGE = BROWSER_DIR / "node_modules" / "@sparticuz" / "chromium"
INSTALL_HINT = (
    "no headless Chromium: install one with `npm ci --prefix tests/report/browser` "
    "(npm registry; bundles the binary) or set FABRICDET_CHROMIUM to a Chromium executable"
)

_UNPACK = (
    "import chromium from '@sparticuz/chromium';"
    "process.stdout.write(await chromium.executablePath());"
)


def _from_npm() -> Path | None:
    """Unpack the npm package's Chromium (once per version) and return its path."""
    node = shutil.which("node")
    if node is None or not NPM_PACKAGE.is_dir() or platform.machine() not in ("x86_64", "AMD64"):
        return None
    version = json.loads((NPM_PACKAGE / "package.json").read_text())["version"]
    tmp = Path(tempfile.gettempdir()) / f"fabricdet-chromium-{version}"
    tmp.mkdir(exist_ok=True)
    done = subprocess.run(
        [node, "--input-type=module", "-e", _UNPACK],
        cwd=BROWSER_DIR,
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def _from_playwright_cache() -> Path | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        path = Path(p.chromium.executable_path)
    return path if path.is_file() else None


def find_chromium() -> Path | None:
    """A Chromium executable (see module doc), or None."""
    env = os.environ.get("FABRICDET_CHROMIUM")
    if env:
        return Path(env) if Path(env).is_file() else None
    for found in (_from_npm(), _from_playwright_cache()):
        if found is not None:
            return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if which := shutil.which(name):
            return Path(which)
    return None


def chromium_or_skip() -> Path:
    """:func:`find_chromium`, or skip (fail when ``FABRICDET_REQUIRE_BROWSER=1``)."""
    pytest.importorskip("playwright.sync_api", reason="the browser test drives it with Playwright")
    path = find_chromium()
    if path is None:
        if os.environ.get("FABRICDET_REQUIRE_BROWSER") == "1":
            pytest.fail(INSTALL_HINT + " (FABRICDET_REQUIRE_BROWSER=1 asks for one)")
        pytest.skip(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class PageCheck:
    """What a page did on loading.

    Attributes:
        errors: console errors, uncaught exceptions, failed requests.
        images: ``(alt, complete, naturalWidth)`` of every ``<img>``.
    """

    errors: list[str]
    images: list[tuple[str, bool, int]]

    @property
    def broken_images(self) -> list[str]:
        """Alt texts of the images that did not decode."""
        return [alt for alt, complete, width in self.images if not (complete and width > 0)]


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched headless Chromium (Playwright ``Browser``), or skip (see
    :func:`chromium_or_skip`)."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root).
        browser = p.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def check_page(browser: Any, path: Path) -> PageCheck:
    """Load the local file ``path`` in ``browser`` and report what went wrong."""
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
