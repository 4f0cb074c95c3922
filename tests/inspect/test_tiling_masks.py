"""Masks through tiled inference: each detection's mask comes back cropped to its box in image
pixels, equal to resizing the whole mask back; pieces cut by seams get the union of their
masks, duplicates the kept one's; the crops survive JSON."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tiling_testdata import drop_masks, paint, painted_detector, with_curve, with_disc

from fabricdet.data.tiling import tile_grid
from fabricdet.engine.crop_mask import CropMask, crop_model_mask, owned_unions, union_masks
from fabricdet.engine.tile_merge import MergeConfig, merge_detections
from fabricdet.engine.tiled import TileOutputs, detect_tiled, detect_tiles
from fabricdet.engine.transforms import Resize, unresize_masks

METHODS = ["sinkhorn", "greedy", "nmm", "wbf"]


def _full(mask: CropMask | None, width: int, height: int) -> np.ndarray:
    return np.zeros((height, width), bool) if mask is None else mask.window(0, 0, width, height)


def test_crop_equals_the_whole_mask_resized_back_then_cropped() -> None:
    rng = np.random.default_rng(0)
    probs = cv2.GaussianBlur(rng.random((128, 320)).astype(np.float32), (0, 0), 3)
    probs = (probs - probs.min()) / (probs.max() - probs.min())
    r = Resize(300, 120, 320, 128)  # the model saw the 300x120 image at 320x128
    full = unresize_masks(probs[None], r)[0] >= 0.5
    box = (37.3, 20.2, 181.6, 99.9)
    crop = crop_model_mask(probs, box, r)
    assert crop is not None
    x0, y0, x1, y1 = crop.box
    assert x0 >= 36 and y0 >= 19 and x1 <= 183 and y1 <= 101  # the box, 1 px margin
    window = (36, 19, 183, 101)
    np.testing.assert_array_equal(crop.window(*window), full[19:101, 36:183])
    # tight: its first and last rows and columns hold pixels
    assert crop.mask[0].any() and crop.mask[-1].any()
    assert crop.mask[:, 0].any() and crop.mask[:, -1].any()
    assert crop_model_mask(np.zeros((128, 320), np.float32), box, r) is None


def test_union_json_and_ownership() -> None:
    a = CropMask(10, 5, np.ones((2, 3), bool))
    b = CropMask(12, 6, np.ones((3, 1), bool))
    u = union_masks([a, None, b])
    assert u is not None and u.box == (10, 5, 13, 9) and u.area == 6 + 2
    assert union_masks([None, None]) is None and union_masks([a]) is a
    back = CropMask.from_json(u.to_json())
    assert back.box == u.box and np.array_equal(back.mask, u.mask)
    assert u.to_json()["x0"] == 10 and u.to_json()["size"] == [4, 3]
    merged = owned_unions([a, b, None], np.array([1, -1, 0]), 2)
    assert merged is not None and merged[0] is None and merged[1] is a
    assert owned_unions(None, np.array([0]), 1) is None


@pytest.mark.parametrize("method", METHODS)
def test_a_wavy_thread_across_seams_gets_the_union_of_its_pieces(method: str) -> None:
    # a thread waving across 3 seams plus a blob whole in an overlap (a plain duplicate)
    x = np.arange(30, 1961)
    points = np.stack([x, 60 + 25 * np.sin(x / 90)], 1)
    image = with_curve(np.zeros((120, 2000, 3), np.uint8), 0, points, 3)
    tiles = tile_grid(2000, 120, 600, None, overlap=136)  # tiles start at 0, 350, 700, ...
    image = with_disc(image, 1, (500, 60), 15)  # whole in tiles 0 and 1
    det = detect_tiled(painted_detector(), image, tiles, merge=MergeConfig(method=method))
    assert det.masks is not None and len(det.masks) == len(det) == 2
    for label, mask in zip(det.labels.tolist(), det.masks, strict=True):
        painted = image[:, :, label] > 0
        np.testing.assert_array_equal(_full(mask, 2000, 120), painted)


def test_masks_line_up_with_boxes_after_thresholding_and_sorting() -> None:
    image = paint((400, 100), [(0, (10, 10, 40, 30)), (1, (200, 50, 260, 90))])
    model = painted_detector()

    def scored(images):  # scores 0.9 and 0.3: the second is dropped at 0.5
        outs = model(images)
        for out in outs:
            out["scores"] = torch.tensor([0.3, 0.9][: len(out["scores"])])
        return outs

    pooled = detect_tiles(scored, image, tile_grid(400, 100, 400), score_threshold=0.5)
    assert pooled.labels.tolist() == [1] and pooled.masks is not None
    assert pooled.masks[0] is not None and pooled.masks[0].box == (200, 50, 260, 90)


def test_box_only_models_and_pooling() -> None:
    image = paint((400, 100), [(0, (10, 10, 40, 30))])
    tiles = tile_grid(400, 100, 250, None, overlap=100)
    pooled = detect_tiles(drop_masks(painted_detector()), image, tiles)
    assert pooled.masks is None
    det = merge_detections(pooled.boxes, pooled.scores, pooled.labels, pooled.tile_index, tiles)
    assert det.masks is None and len(det) == 1
    with_masks = detect_tiles(painted_detector(), image, tiles)
    mixed = TileOutputs.concat([pooled, with_masks.shifted(0, 100)])
    assert mixed.masks is not None and mixed.masks[0] is None
    assert mixed.masks[-1] is not None and mixed.masks[-1].box == (10, 110, 40, 130)
    with pytest.raises(ValueError, match="masks for"):
        merge_detections(
            pooled.boxes, pooled.scores, pooled.labels, pooled.tile_index, tiles, masks=()
        )
