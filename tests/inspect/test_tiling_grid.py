"""Tile grids: coverage, overlap, width-only slicing, inner borders."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabricdet.data.tiling import tile_grid, tile_offsets, tile_starts


@given(
    length=st.integers(1, 5000),
    tile=st.integers(1, 1200),
    overlap_frac=st.floats(0.0, 0.9),
)
def test_starts_cover_with_the_overlap_and_no_spare_tile(
    length: int, tile: int, overlap_frac: float
) -> None:
    overlap = min(int(tile * overlap_frac), tile - 1)
    starts = tile_starts(length, tile, overlap)
    if tile >= length:
        assert starts == [0]
        return
    assert starts[0] == 0 and starts[-1] == length - tile
    gaps = np.diff(starts)
    assert (gaps > 0).all()
    assert (tile - gaps >= overlap).all()  # neighbours share at least the overlap
    # one tile fewer could not cover the length with that overlap
    n = len(starts) - 1
    assert n * tile - (n - 1) * overlap < length


def test_width_only_slicing_keeps_full_height_and_marks_inner_sides() -> None:
    tiles = tile_grid(4096, 256, 1024, None, overlap=64)
    assert len(tiles) == 5
    assert all((t.y0, t.y1, t.width) == (0, 256, 1024) for t in tiles)
    assert tiles[0].inner == (False, False, True, False)
    assert tiles[2].inner == (True, False, True, False)
    assert tiles[-1].inner == (True, False, False, False)
    assert tiles[-1].x1 == 4096


def test_grid_is_row_major_and_offsets_shift_boxes() -> None:
    tiles = tile_grid(1000, 700, 400, 400, overlap=(50, 100))
    assert [(t.x0, t.y0) for t in tiles] == [
        (0, 0), (300, 0), (600, 0), (0, 300), (300, 300), (600, 300)
    ]  # fmt: skip
    np.testing.assert_array_equal(tile_offsets(tiles)[4], [300, 300, 300, 300])
    image = np.arange(700 * 1000).reshape(700, 1000)
    assert tiles[4].crop(image)[0, 0] == image[300, 300]


def test_small_image_is_one_tile() -> None:
    (tile,) = tile_grid(200, 100, 640, 640, overlap=64)
    assert (tile.x0, tile.y0, tile.x1, tile.y1) == (0, 0, 200, 100)
    assert tile.inner == (False, False, False, False)


def test_overlap_as_large_as_the_tile_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(1000, 100, 200, overlap=200)
