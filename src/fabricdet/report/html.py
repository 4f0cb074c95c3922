"""A minimal builder of self-contained HTML pages: headings, text, tables and PNG images.

Images are embedded as base64 data URIs, so the page is one file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fabricdet.data.formats.atomic import atomic_write_text

#: The first 8 bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.best td { font-weight: bold; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 0.9em; color: #555; }
"""


class HtmlReport:
    """Collects sections and writes them as one HTML file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        """A heading; ``anchor`` becomes its ``id`` (a link target: ``#anchor``)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[object]], best_row: int | None = None
    ) -> None:
        """A table; floats are printed with 3 decimals; ``best_row`` is shown in bold."""

        def cell(v: object) -> str:
            return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for i, row in enumerate(rows):
            cls = ' class="best"' if i == best_row else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
        self.parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")

    def image(self, image_bgr: np.ndarray, caption: str, max_width: int = 1200) -> None:
        """Embed an image (``ndarray[H, W, 3]`` uint8, BGR), downscaled to ``max_width``."""
        h, w = image_bgr.shape[:2]
        if w > max_width:
            image_bgr = cv2.resize(image_bgr, (max_width, round(h * max_width / w)), cv2.INTER_AREA)
        ok, png = cv2.imencode(".png", image_bgr)
        if not ok:
            raise ValueError("could not encode the image as PNG")
        self.png(png.tobytes(), caption)

    def png(self, data: bytes, caption: str) -> None:
        """Embed an already encoded PNG (e.g. a matplotlib figure saved as PNG)."""
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("not a PNG: the data lacks the PNG signature")
        uri = base64.b64encode(data).decode("ascii")
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{uri}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        title = html.escape(self.title)
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{''.join(self.parts)}"
            "</body></html>"
        )

    def write(self, path: Path) -> None:
        """Write atomically (temporary file, then rename)."""
        atomic_write_text(path, self.render())
