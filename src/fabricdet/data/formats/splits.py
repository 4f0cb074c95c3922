"""Train/val/test splits: the ``Annotations/splits.json`` file and deterministic assignment.

``splits.json`` is ``{"train": [file names], "val": [...], "test": [...]}`` with file names
relative to the dataset root (e.g. ``"defect_Images/a.jpg"``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from fabricdet.data.dataset import DetectionDataset

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Spellings other tools use for the same splits.
_ALIASES: dict[str, str] = {"valid": "val", "validation": "val", "training": "train"}


def normalise_split(name: str) -> str | None:
    """Canonical split name (``"train"``, ``"val"``, ``"test"``), or ``None`` if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in SPLITS else None


def hash_fraction(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed``: the same on every run and machine.

    (Python's ``hash`` is salted per process, so it cannot be used here.)
    """
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(
    dataset: DetectionDataset, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> DetectionDataset:
    """A copy of ``dataset`` with a split for every image that has none.

    Each image goes to ``test`` with probability ``test``, to ``val`` with probability ``val``,
    else to ``train``, decided by hashing its file name with ``seed``: deterministic, stable
    across runs and machines, and an image keeps its split when others are added or removed.
    Images that already have a split keep it. The input is not modified.
    """
    if val < 0.0 or test < 0.0 or val + test > 1.0:
        raise ValueError(f"need 0 <= val, 0 <= test and val + test <= 1, got {val=}, {test=}")
    images = []
    for rec in dataset.images:
        split = rec.split
        if split is None:
            u = hash_fraction(rec.file_name, seed)
            split = "test" if u < test else "val" if u < test + val else "train"
        # A new record and a new instance list, so edits to the copy never reach the input.
        images.append(replace(rec, split=split, instances=list(rec.instances)))
    return DetectionDataset(dataset.root, dataset.categories, images)


def splits_dict(dataset: DetectionDataset) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` of the images that have a split."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rec in dataset.images:
        if rec.split is not None:
            out.setdefault(rec.split, []).append(rec.file_name)
    return out
