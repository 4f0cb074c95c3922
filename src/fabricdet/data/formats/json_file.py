"""Reading a JSON file with errors that name the file, the line and the column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fabricdet.data.formats.problems import fatal


def read_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file.

    Raises:
        InvalidDataError: the file is missing, not UTF-8, or not valid JSON (with line and
            column of the first syntax error).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise fatal("missing-file", path, f"{what} not found", "check the path") from None
    except OSError as err:
        raise fatal(
            "unreadable-file", path, f"cannot read {what}: {err}", "check permissions"
        ) from err
    try:
        text = raw.decode("utf-8-sig")  # tolerate a byte-order mark some editors add
    except UnicodeDecodeError as err:
        raise fatal(
            "malformed-json", path, f"{what} is not UTF-8 text ({err})", "save the file as UTF-8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise fatal(
            "malformed-json",
            path,
            f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}",
            "repair the file (a truncated copy or a trailing comma are the usual causes)",
        ) from None
