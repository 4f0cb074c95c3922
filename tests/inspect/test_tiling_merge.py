"""Tiled inference merges detections across tile seams: a defect cut by seams comes out as
one box, twins stay two, whole duplicates in the overlap become one.

The model is the painted-rectangle detector: on each tile it reports the painted rectangles
clipped to the tile, exactly what an ideal detector sees."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiling_testdata import paint, painted_detector, save_painted_model

from fabricdet.cli import main
from fabricdet.data.tiling import tile_grid
from fabricdet.engine.tile_merge import (
    MergeConfig,
    _stitch_pairs,
    merge_detections,
    non_maximum_merge,
    stitch_edges,
    truncated_sides,
)
from fabricdet.engine.tiled import detect_tiled, detect_tiles

METHODS = ["sinkhorn", "greedy", "nmm", "wbf"]


def _boxes(det) -> list[list[float]]:
    return sorted(det.boxes.round().tolist())


@pytest.mark.parametrize("method", METHODS)
def test_long_thread_across_three_seams_is_one_box(method: str) -> None:
    thread = (30, 40, 1960, 44)  # 1930 px long, 4 px thick: crosses every seam
    image = paint((2000, 120), [(0, thread)])
    tiles = tile_grid(2000, 120, 600, None, overlap=64)
    assert len(tiles) == 4
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(method=method))
    assert _boxes(det) == [list(map(float, thread))]
    assert det.labels.tolist() == [0]


def test_without_stitching_the_pieces_stay_apart() -> None:
    """The stitch is what joins the pieces: duplicate removal alone leaves 4 boxes (their
    IoU is ~0.05) and none of them is the thread."""
    thread = (30, 40, 1960, 44)
    image = paint((2000, 120), [(0, thread)])
    tiles = tile_grid(2000, 120, 600, None, overlap=64)
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(stitch=False))
    assert len(det) == 4
    assert all(b[2] - b[0] < 700 for b in _boxes(det))


@pytest.mark.parametrize("method", METHODS)
def test_parallel_twin_threads_across_seams_stay_two(method: str) -> None:
    twins = [(0, (10, 40, 1990, 43)), (0, (10, 47, 1990, 50))]  # 4 px apart
    image = paint((2000, 120), twins)
    tiles = tile_grid(2000, 120, 600, None, overlap=64)
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(method=method))
    assert _boxes(det) == [[10.0, 40.0, 1990.0, 43.0], [10.0, 47.0, 1990.0, 50.0]]


@pytest.mark.parametrize("method", METHODS)
def test_knot_across_a_seam_and_a_blob_in_the_overlap(method: str) -> None:
    tiles = tile_grid(1000, 100, 600, None, overlap=200)  # tiles 0..600 and 400..1000
    knot = (380, 20, 420, 50)  # straddles the second tile's left border
    blob = (450, 60, 500, 90)  # whole in both tiles: a plain duplicate
    other = (1, (450, 20, 480, 40))  # another class next to it: untouched
    image = paint((1000, 100), [(0, knot), (0, blob), other])
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(method=method))
    got = sorted(zip(det.labels.tolist(), det.boxes.round().tolist(), strict=True))
    assert got == [
        (0, [380.0, 20.0, 420.0, 50.0]),
        (0, [450.0, 60.0, 500.0, 90.0]),
        (1, [450.0, 20.0, 480.0, 40.0]),
    ]


@pytest.mark.parametrize("method", METHODS)
def test_a_taller_box_past_the_cut_is_no_piece_of_the_thread(method: str) -> None:
    """Past the first tile's right border, a same-class box 7x as tall as the thread carries
    on from where the thread's piece is cut and contains its extent: joined, their union
    would replace the thread by a box 7x too tall."""
    tiles = tile_grid(1000, 100, 600, None, overlap=200)  # tiles 0..600 and 400..1000
    thread, tall = (30, 40, 604, 44), (606, 30, 700, 60)
    image = paint((1000, 100), [(0, thread), (0, tall)])
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(method=method))
    assert _boxes(det) == [list(map(float, thread)), list(map(float, tall))]


def test_seam_without_overlap_and_a_two_dimensional_grid() -> None:
    """Abutting tiles (overlap 0) cut a vertical thread exactly on the seams; it still
    comes out whole, and so does a horizontal one crossing the vertical seams."""
    vertical = (300, 5, 304, 590)
    horizontal = (1, (20, 250, 580, 253))
    image = paint((600, 600), [(0, vertical), horizontal])
    tiles = tile_grid(600, 600, 200, 200, overlap=0)
    assert len(tiles) == 9
    det = detect_tiled(painted_detector(), image, tiles, batch_size=4)
    got = sorted(zip(det.labels.tolist(), det.boxes.round().tolist(), strict=True))
    assert got == [(0, [300.0, 5.0, 304.0, 590.0]), (1, [20.0, 250.0, 580.0, 253.0])]


def test_boxes_at_the_image_edge_are_not_cut() -> None:
    tiles = tile_grid(1000, 100, 600, None, overlap=200)
    boxes = np.array([[0, 0, 50, 100], [550, 10, 600, 20], [950, 0, 1000, 10.0]])
    cut = truncated_sides(boxes, np.array([0, 0, 1]), tiles, tol=2.0)
    assert cut.tolist() == [
        [False, False, False, False],  # image edges on the left, top and bottom
        [False, False, True, False],  # the first tile's inner right side
        [False, False, False, False],  # the image's right edge
    ]


def test_tiles_are_batched_and_indexed() -> None:
    image = paint((2000, 120), [(1, (30, 40, 1960, 44))])
    tiles = tile_grid(2000, 120, 600, None, overlap=64)
    calls: list[int] = []
    model = painted_detector()

    def counting(images):  # a callable is enough: the torchvision eval contract
        calls.append(len(images))
        return model(images)

    pooled = detect_tiles(counting, image, tiles, batch_size=3)
    assert calls == [3, 1]
    assert pooled.tile_index.tolist() == [0, 1, 2, 3]
    assert pooled.boxes[:, 0].tolist() == [30.0, tiles[1].x0, tiles[2].x0, tiles[3].x0]


def test_non_maximum_merge_unions_by_intersection_over_smaller() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 30, 10], [8, 0, 9, 10], [100, 0, 110, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    out_boxes, out_scores, out_labels = non_maximum_merge(boxes, scores, labels, 0.5)
    # box 1 covers half of box 0 (IoS 0.5): merged; box 2 is another class; box 3 is apart
    assert out_boxes.tolist() == [[0, 0, 30, 10], [8, 0, 9, 10], [100, 0, 110, 10]]
    assert out_scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert out_labels.tolist() == [0, 1, 0]


def test_empty_input_and_bad_config() -> None:
    tiles = tile_grid(100, 100, 50, 50)
    empty = merge_detections(
        torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long), tiles,
    )  # fmt: skip
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="unknown merge method"):
        MergeConfig(method="union")


def test_seam_pairs_found_locally_equal_all_pairs() -> None:
    # Stitching compares each chunk of cut boxes only with the boxes near it; on many random
    # pieces over a 2-D grid it must find exactly the pairs of comparing all with all.
    rng = np.random.default_rng(0)
    tiles = tile_grid(2000, 1200, 320, 256, overlap=64)
    tile_index = rng.integers(0, len(tiles), 3000)
    frame = np.array([[t.x0, t.y0, t.x1, t.y1] for t in tiles], dtype=np.float64)[tile_index]
    lo = frame[:, :2] + rng.uniform(-20, 300, (3000, 2)) * [1, 0.8]
    hi = lo + rng.uniform(3, 200, (3000, 2))
    boxes = np.concatenate([np.maximum(lo, frame[:, :2]), np.minimum(hi, frame[:, 2:])], 1)
    labels = rng.integers(0, 3, 3000)
    cut = truncated_sides(boxes, tile_index, tiles, tol=8.0)
    assert cut.any(1).sum() > 1000  # many chunks, pieces cut on every side
    i, j = stitch_edges(boxes, labels, tile_index, cut, 0.5, 8.0)
    rows, every = np.flatnonzero(cut.any(1)), np.arange(len(boxes))
    ref = _stitch_pairs(boxes, labels, tile_index, cut, rows, every, 0.5, 8.0)
    assert len(i) > 100
    assert np.array_equal(i, ref[0]) and np.array_equal(j, ref[1])  # the same pairs, in order


def test_detect_command_on_tiles_joins_defects_across_seams(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A 1000x300 image for a model of 320 px: on 320 px tiles a thread crosses three seams and
    # a knot sits on one; both come back whole, in image pixels.
    model = save_painted_model(tmp_path / "painted.pt")
    rects = [(0, (40, 150, 950, 154)), (1, (300, 100, 340, 130))]
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), paint((1000, 300), rects)[:, :, ::-1])
    out = tmp_path / "out"
    argv = ["detect", str(model), str(image), "--out", str(out), "--no-draw", "--quiet"]
    assert main([*argv, "--tile", "320"]) == 0
    doc = json.loads((out / "detections.json").read_text())[0]
    assert (doc["width"], doc["height"]) == (1000, 300)
    got = sorted(zip(doc["labels"], doc["boxes"], strict=True))
    assert [label for label, _ in got] == [0, 1]
    for (_, box), (_, want) in zip(got, sorted(rects), strict=True):
        np.testing.assert_allclose(box, want, atol=2.0)
    # the pieces' masks joined too: the thread's 910 x 4 px and the knot's 40 x 30 px
    assert sorted(doc["areas_px"]) == pytest.approx([1200, 3640], abs=40)
    capsys.readouterr()
    assert main([*argv, "--tile", "64", "--overlap", "64"]) == 2
    assert "--overlap" in capsys.readouterr().err
