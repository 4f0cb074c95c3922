"""Image sizes read from file headers, without decoding pixels.

The Tianchi training set holds 9,576 images of 2446x1000; decoding them all just to learn their
size would take minutes, reading the headers takes about a second. A header that cannot be
parsed is reported as an unreadable image; damage past the header is only found when the
image is decoded for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: file suffixes treated as images when a folder is listed (compared lower-case).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

# Header reads are I/O bound (network disks especially); threads overlap the waits.
_WORKERS = 8
_PARALLEL_FROM = 64


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header.

    Raises:
        FileNotFoundError: no such file.
        OSError: the header cannot be parsed (PIL's ``UnidentifiedImageError`` is one).
    """
    with Image.open(path) as im:
        return im.size


def header_error(path: Path) -> tuple[int, int] | str:
    """Size of an image, or a one-line reason why it cannot be read."""
    try:
        return read_image_size(path)
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not a readable image (corrupt or unknown header)"
    except OSError as err:
        return f"cannot read image header ({err})"


def read_image_sizes(paths: Sequence[Path]) -> list[tuple[int, int] | str]:
    """Sizes of many images, in order; a string in place of a size says why it failed."""
    if len(paths) < _PARALLEL_FROM:
        return [header_error(p) for p in paths]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        return list(pool.map(header_error, paths))
