"""Self-contained HTML reports (images embedded, no external files or scripts)."""

from fabricdet.report.html import HtmlReport

__all__ = ["HtmlReport"]
