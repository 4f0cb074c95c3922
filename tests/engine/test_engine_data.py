"""Data pipeline: aspect-keeping resize, boxes and masks consistent with pixels through resize
and flips, the collate, repeat-factor sampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_testdata import CATS, painted_dataset

from fabricdet.data.dataset import DetectionDataset, ImageRecord, Instance
from fabricdet.engine import DataConfig
from fabricdet.engine.data import TorchDetectionDataset, collate, select_split
from fabricdet.engine.sampler import RepeatFactorBatchSampler, repeat_factors
from fabricdet.engine.transforms import (
    Resize,
    crop,
    crop_window,
    resize_boxes,
    resized_size,
    unresize_boxes,
)
from fabricdet.errors import DataError


def test_resized_size_keeps_wide_images_wide():
    assert resized_size(2446, 1000, 1024, 32) == (1024, 416)
    assert resized_size(1000, 2446, 1024, 32) == (416, 1024)
    assert resized_size(2446, 1000, 2446, 32) == (2432, 992)
    assert resized_size(4000, 10, 512, 32) == (512, 32)  # never below one stride


def test_resize_boxes_round_trip_and_minimum_size():
    r = Resize(2446, 1000, 1024, 416)
    boxes = np.array([[100.0, 200.0, 900.0, 260.0], [2000.0, 10.0, 2000.5, 990.0]], np.float32)
    small = resize_boxes(boxes, r)
    assert np.all(small[:, 2] - small[:, 0] >= 1.0 - 1e-5)  # hair-thin thread kept 1 px wide
    assert np.all(small >= 0) and np.all(small[:, [0, 2]] <= 1024)
    back = unresize_boxes(small, r)
    np.testing.assert_allclose(back[0], boxes[0], atol=1e-3)
    assert abs((back[1, 0] + back[1, 2]) / 2 - 2000.25) < 1e-2  # centre kept


def _box_of_colour(image: torch.Tensor, channel: int, box: torch.Tensor) -> float:
    """Fraction of the box interior coloured in ``channel`` (1.0 = box sits on its object)."""
    x1, y1, x2, y2 = (int(v) for v in box.round())
    inner = image[channel, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
    return float((inner > 0.5).float().mean())


@pytest.mark.parametrize("seed", range(6))
def test_boxes_and_masks_follow_the_pixels_through_resize_and_flips(tmp_path, seed):
    ds = painted_dataset(tmp_path)
    tds = TorchDetectionDataset(ds, DataConfig(max_size=160, size_divisor=32, masks="full"))
    flips = set()
    for index in range(len(ds.images)):
        image, target, meta = tds[(index, seed * 7 + index)]
        flips.add((meta.hflip, meta.vflip))
        assert image.shape == (3, 64, 160) and image.dtype == torch.float32
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["masks"].shape == (len(target["boxes"]), 64, 160)
        for box, label, mask in zip(
            target["boxes"], target["labels"], target["masks"], strict=True
        ):
            assert _box_of_colour(image, int(label), box) > 0.95
            ys, xs = torch.nonzero(mask, as_tuple=True)
            mbox = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert torch.allclose(mbox, box, atol=1.5)


@pytest.mark.parametrize("seed", range(4))
def test_training_crops_follow_the_pixels(tmp_path, seed):
    ds = painted_dataset(tmp_path)
    cfg = DataConfig(max_size=160, size_divisor=32, masks="full", crop_width=64, crop_height=64)
    tds = TorchDetectionDataset(ds, cfg)
    for index in range(len(ds.images)):
        image, target, _ = tds[(index, seed * 7 + index)]
        assert image.shape == (3, 64, 64)
        assert target["masks"].shape == (len(target["boxes"]), 64, 64)
        for box, label in zip(target["boxes"], target["labels"], strict=True):
            assert _box_of_colour(image, int(label), box) > 0.95
    assert tds[0][0].shape == (3, 64, 160)  # evaluation sees the whole image


def test_crop_keeps_cut_threads_and_drops_slivers():
    image = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array(
        [
            [10.0, 40.0, 190.0, 43.0],  # thread across the image: cut, keeps its full height
            [95.0, 10.0, 135.0, 50.0],  # blob with 1/8 of its area in the window
            [20.0, 60.0, 40.0, 80.0],  # inside
            [150.0, 60.0, 170.0, 80.0],  # outside
        ],
        np.float32,
    )
    out, kept_boxes, kept, _ = crop(image, boxes, None, (0, 0, 100, 100))
    assert out.shape == (100, 100, 3) and kept.tolist() == [0, 2]
    np.testing.assert_allclose(kept_boxes, [[10, 40, 100, 43], [20, 60, 40, 80]])


def test_crop_window_holds_an_object_centre():
    rng = np.random.default_rng(0)
    boxes = np.array([[300.0, 10.0, 310.0, 20.0]], np.float32)
    for _ in range(50):
        x0, y0, w, h = crop_window(640, 256, (128, 128), boxes, rng, on_object=1.0)
        assert (w, h) == (128, 128) and 0 <= x0 <= 512 and 0 <= y0 <= 128
        assert x0 <= 305 <= x0 + w and y0 <= 15 <= y0 + h


def test_flip_probabilities_are_honoured(tmp_path):
    ds = painted_dataset(tmp_path)
    never = TorchDetectionDataset(ds, DataConfig(max_size=160, hflip=0.0, vflip=0.0))
    always = TorchDetectionDataset(ds, DataConfig(max_size=160, hflip=1.0, vflip=1.0))
    assert not any(never[(0, s)][2].hflip for s in range(10))
    img, target, meta = always[(0, 3)]
    plain, plain_target, _ = never[0]
    assert meta.hflip and meta.vflip
    assert torch.equal(img, plain.flip(1).flip(2))
    w, h = 160, 64
    b = plain_target["boxes"]
    expected = torch.stack([w - b[:, 2], h - b[:, 3], w - b[:, 0], h - b[:, 1]], 1)
    assert torch.allclose(target["boxes"], expected)


def test_collate_keeps_lists(tmp_path):
    ds = painted_dataset(tmp_path)
    tds = TorchDetectionDataset(ds, DataConfig(max_size=160))
    batch = collate([tds[0], tds[1]])
    assert isinstance(batch.images, list) and len(batch.images) == 2
    assert [m.image_id for m in batch.metas] == [1, 2]
    assert len(batch.targets[0]["boxes"]) == 2 and "masks" not in batch.targets[0]


def test_masks_full_without_masks_is_a_clear_error(tmp_path):
    ds = painted_dataset(tmp_path, with_masks=False)
    with pytest.raises(DataError, match=r"data\.masks=none"):
        TorchDetectionDataset(ds, DataConfig(masks="full"))


def test_corrupt_image_names_the_file(tmp_path):
    ds = painted_dataset(tmp_path)
    (tmp_path / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1\.png.*cannot decode"):
        TorchDetectionDataset(ds, DataConfig())[0]


def test_select_split_assigns_missing_splits_and_reports_empty_ones(tmp_path):
    ds = painted_dataset(tmp_path)
    for rec in ds.images:
        rec.split = None
    assert len(select_split(ds, "all").images) == 3
    assert all(r.split is not None for r in select_split(ds, "all").images)
    with pytest.raises(DataError, match="split 'nope' has no images"):
        select_split(ds, "nope")


def _long_tailed(n_common: int, n_rare: int) -> DetectionDataset:
    recs = [
        ImageRecord(k, f"{k}.jpg", 10, 10, [Instance((0, 0, 5, 5), 1)]) for k in range(n_common)
    ]
    recs += [
        ImageRecord(n_common + k, f"r{k}.jpg", 10, 10, [Instance((0, 0, 5, 5), 2)])
        for k in range(n_rare)
    ]
    recs.append(ImageRecord(999, "normal.jpg", 10, 10, []))
    return DetectionDataset(Path("."), CATS, recs)


def test_repeat_factors_follow_lvis():
    ds = _long_tailed(n_common=95, n_rare=4)  # rare: f = 4/100 -> r = sqrt(0.1 / 0.04)
    r = repeat_factors(ds, 0.1)
    assert np.allclose(r[:95], 1.0)
    assert np.allclose(r[95:99], np.sqrt(0.1 / 0.04))
    assert r[-1] == 1.0  # defect-free image
    assert np.all(repeat_factors(ds, 0.0) == 1.0)


def test_sampler_repeats_rare_classes():
    ds = _long_tailed(n_common=95, n_rare=4)
    sampler = RepeatFactorBatchSampler(repeat_factors(ds, 0.1), 10, seed=0)
    it = iter(sampler)
    counts = Counter(i for _ in range(200) for i, _ in next(it))  # ~ 19 epochs
    rare = np.mean([counts[i] for i in range(95, 99)])
    common = np.mean([counts[i] for i in range(95)])
    assert rare / common == pytest.approx(np.sqrt(2.5), rel=0.15)


def test_sampler_resumes_and_shards_deterministically():
    factors = repeat_factors(_long_tailed(20, 3), 0.1)

    def batches(start: int, n: int, rank: int = 0, world: int = 1) -> list:
        it = iter(RepeatFactorBatchSampler(factors, 4, 7, rank, world, start_batch=start))
        return [next(it) for _ in range(n)]

    full = batches(0, 30)
    assert batches(13, 17) == full[13:]  # resume replays nothing and skips nothing
    assert batches(0, 30) == full  # deterministic
    r0, r1 = batches(0, 12, 0, 2), batches(0, 12, 1, 2)
    seeds0 = {s for b in r0 for _, s in b}
    seeds1 = {s for b in r1 for _, s in b}
    assert not seeds0 & seeds1  # the two ranks never draw the same stream position
