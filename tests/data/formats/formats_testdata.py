"""Tiny on-disk datasets for the format tests (images of a few dozen pixels).

A uniquely named module (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

W, H = 64, 32


def make_image(path: Path, width: int = W, height: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 110, 100)).save(path)
    return path


def write_tianchi_folder(
    root: Path,
    records: list[dict[str, object]],
    defect: tuple[str, ...] = ("a.jpg", "b.jpg"),
    normal: tuple[str, ...] = ("n.jpg",),
    *,
    ensure_ascii: bool = True,
) -> Path:
    for name in defect:
        make_image(root / "defect_Images" / name)
    for name in normal:
        make_image(root / "normal_Images" / name)
    ann = root / "Annotations" / "anno_train.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(records, ensure_ascii=ensure_ascii), encoding="utf-8")
    return root
