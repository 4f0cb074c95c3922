"""Fixtures for the format tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from formats_testdata import write_tianchi_folder


@pytest.fixture
def tianchi_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``tianchi_folder(records, defect=..., normal=...)`` -> dataset root."""

    def build(records: list[dict[str, object]], **kwargs: object) -> Path:
        return write_tianchi_folder(tmp_path / "ds", records, **kwargs)  # type: ignore[arg-type]

    return build


@pytest.fixture
def basic_records() -> list[dict[str, object]]:
    return [
        {"name": "a.jpg", "defect_name": "破洞", "bbox": [1.0, 2.0, 10.0, 12.0]},
        {"name": "a.jpg", "defect_name": "油渍", "bbox": [20.5, 3.25, 40.0, 30.0]},
        {"name": "b.jpg", "defect_name": "纬纱不良", "bbox": [0.0, 0.0, 64.0, 2.0]},
    ]
