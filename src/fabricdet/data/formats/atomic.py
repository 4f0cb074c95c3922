"""Atomic file writes: write to a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written annotation file: either the old file (or none) or the
complete new one. The temporary file lives beside the target so the final rename stays on one
file system (where ``os.replace`` is atomic).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, fsync: bool = True) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    Parent folders are created; on any failure the temporary file is removed and ``path`` is
    untouched. ``fsync=False`` skips flushing to disk (still atomic for readers, not across a
    power loss): for the thousands of small label files of a YOLO dataset.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        # mkstemp creates 0600 files; annotation files are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` atomically (:func:`atomic_write`)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), fsync=fsync)


def atomic_write_json(path: Path, obj: Any, *, ensure_ascii: bool = False) -> None:
    """Write ``obj`` as JSON atomically. NaN/inf are refused (they are not valid JSON)."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=ensure_ascii, allow_nan=False) + "\n")


def json_lines_list(items: list[Any], *, ensure_ascii: bool = False) -> str:
    """A JSON list with one item per line: valid JSON, readable, and diff-friendly.

    Parse errors then report a line number that points at one record.
    """
    if not items:
        return "[]\n"
    body = ",\n".join(json.dumps(it, ensure_ascii=ensure_ascii, allow_nan=False) for it in items)
    return "[\n" + body + "\n]\n"
