"""Reading a report back: its images, anchors, tables and outside references."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser

PNG_URI = "data:image/png;base64,"


@dataclass
class ParsedReport:
    images: list[tuple[str, str]] = field(default_factory=list)  # (src, alt)
    ids: list[str] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # every src/href
    tags: set[str] = field(default_factory=set)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.out = ParsedReport()
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.out.tags.add(tag)
        if "id" in a:
            self.out.ids.append(a["id"])
        self.out.references += [a[k] for k in ("src", "href") if k in a]
        if tag == "img":
            self.out.images.append((a.get("src", ""), a.get("alt", "")))
        elif tag == "table":
            self.out.tables.append([])
        elif tag == "tr":
            self.out.tables[-1].append([])
        if tag in ("h1", "h2", "h3", "td", "th"):
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        text = "".join(self._text)
        if tag in ("td", "th"):
            self.out.tables[-1][-1].append(text)
            self._text = None
        elif tag in ("h1", "h2", "h3"):
            self.out.headings.append(text)
            self._text = None


def parse_report(html: str) -> ParsedReport:
    p = _Parser()
    p.feed(html)
    p.close()
    return p.out


def png_bytes(src: str) -> bytes:
    """The PNG of a data URI (``ValueError`` when it is not a base64 PNG data URI)."""
    if not src.startswith(PNG_URI):
        raise ValueError(f"not a PNG data URI: {src[:40]!r}")
    return base64.b64decode(src[len(PNG_URI) :], validate=True)
