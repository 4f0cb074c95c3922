"""A roll as one tall virtual image: consecutive frames (a folder, sorted by name) or one long
image, read lazily band by band so a long roll never sits in memory whole.

Roll coordinates: x across the roll (frame columns), y along it (rows, from the roll's
start). Frame ``k`` begins at row ``start[k]``; consecutive frames may share
``frame_overlap`` rows (a camera triggered to overlap), which are then counted once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fabricdet.data.formats.image_size import is_image_file, read_image_sizes
from fabricdet.engine.data import read_image
from fabricdet.errors import DataError

#: Decoded frames kept for the next band (a band spans at most a few frames).
_CACHE = 4

#: Rows read at once by :meth:`RollFrames.thumbnail` (bounds its memory on a long region).
_THUMB_CHUNK = 512


@dataclass
class RollFrames:
    """Consecutive frames of one roll.

    Attributes:
        files: the frames in roll order.
        width: frame width, pixels (the same for every frame).
        heights: each frame's height, pixels.
        frame_overlap: rows a frame shares with the previous one.
    """

    files: tuple[Path, ...]
    width: int
    heights: tuple[int, ...]
    frame_overlap: int = 0
    _cache: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict, repr=False)

    @property
    def starts(self) -> np.ndarray:
        """Roll row of each frame's first row: ndarray[F] int64."""
        h = np.asarray(self.heights, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(h[:-1] - self.frame_overlap)])

    @property
    def length(self) -> int:
        """Roll length in rows."""
        return int(self.starts[-1] + self.heights[-1])

    def frame_of_row(self, row: float) -> int:
        """Index of the frame holding roll row ``row`` (the later one in a shared overlap)."""
        return int(np.clip(np.searchsorted(self.starts, row, side="right") - 1, 0, None))

    def _frame(self, k: int) -> np.ndarray:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        image = read_image(self.files[k])
        if image.shape[:2] != (self.heights[k], self.width):
            raise DataError(
                f"{self.files[k]}: decoded as {image.shape[1]}x{image.shape[0]} but its header "
                f"says {self.width}x{self.heights[k]}; the file is damaged, replace it"
            )
        self._cache[k] = image
        if len(self._cache) > _CACHE:
            self._cache.popitem(last=False)
        return image

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Roll rows ``y0..y1-1``, all columns: ndarray[y1 - y0, W, 3] uint8 RGB."""
        if not 0 <= y0 < y1 <= self.length:
            raise ValueError(f"rows {y0}..{y1} outside the roll's 0..{self.length}")
        out = np.empty((y1 - y0, self.width, 3), np.uint8)
        starts = self.starts
        for k in range(self.frame_of_row(y0), len(self.files)):
            top = int(starts[k])
            if top >= y1:
                break
            lo = max(y0, top)
            hi = min(y1, top + self.heights[k])
            if hi > lo:
                out[lo - y0 : hi - y0] = self._frame(k)[lo - top : hi - top]
        return out

    def thumbnail(self, x0: int, y0: int, x1: int, y1: int, scale: float) -> np.ndarray:
        """The region ``[x0, x1) x [y0, y1)`` of the roll scaled by ``scale`` (<= 1).

        Read and shrunk a few hundred rows at a time, so a region as long as the roll (a
        thread running its whole length) costs a thumbnail's memory, not the region's.

        Returns:
            ndarray[round((y1 - y0) * scale), round((x1 - x0) * scale), 3] uint8 RGB (each
            side at least 1).
        """
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        if scale == 1:
            return self.rows(y0, y1)[:, x0:x1]
        width = max(1, round((x1 - x0) * scale))
        parts = []
        for c0 in range(y0, y1, _THUMB_CHUNK):
            c1 = min(c0 + _THUMB_CHUNK, y1)
            # rows of this chunk in the output: cumulative rounding, so the chunks tile it
            rows = round((c1 - y0) * scale) - round((c0 - y0) * scale)
            if rows > 0:
                chunk = self.rows(c0, c1)[:, x0:x1]
                parts.append(cv2.resize(chunk, (width, rows), interpolation=cv2.INTER_AREA))
        return np.concatenate(parts) if parts else np.zeros((1, width, 3), np.uint8)


def open_roll(source: Path | Sequence[Path], frame_overlap: int = 0) -> RollFrames:
    """The roll in a folder of consecutive frames (sorted by name), a list of frame files, or
    one long image.

    Raises:
        DataError: a missing path, an empty folder, an unreadable frame or one of another
            width, naming the file and the fix; an overlap as tall as a frame.
    """
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():
            files = sorted(f for f in source.iterdir() if f.is_file() and is_image_file(f))
            if not files:
                raise DataError(
                    f"{source}: folder holds no image files (.jpg, .png, ...); point at the "
                    "folder of the roll's frames or at one long image"
                )
        elif source.is_file():
            files = [source]
        else:
            raise DataError(f"{source}: no such folder or image; check the path")
    else:
        files = [Path(f) for f in source]
        if not files:
            raise DataError("no frames given; pass a folder of frames or one long image")
    sizes = read_image_sizes(files)
    for f, size in zip(files, sizes, strict=True):
        if isinstance(size, str):
            raise DataError(f"{f}: {size}; replace the frame or remove it from the folder")
    width = sizes[0][0]  # type: ignore[index]
    for f, size in zip(files, sizes, strict=True):
        if size[0] != width:  # type: ignore[index]
            raise DataError(
                f"{f}: frame is {size[0]} px wide but {files[0].name} is {width}; every frame "  # type: ignore[index]
                "of a roll must have the camera's width: remove or re-export the odd one"
            )
    heights = tuple(int(s[1]) for s in sizes)  # type: ignore[index]
    if not 0 <= frame_overlap < min(heights):
        raise DataError(
            f"frame overlap {frame_overlap} rows: expected 0 up to less than the shortest frame "
            f"({min(heights)} rows)"
        )
    return RollFrames(tuple(files), int(width), heights, frame_overlap)
